//! The rules loader: bytes as YAML text → `RuleSet::parse`; the rules of a file that loads then link sample
//! objects (`kelemetry_fuzz::sample_objects`). Checks: every error has a position (line and column from 1) and
//! a message; rules are numbered from 1 in file order; linking is deterministic and every link names an object
//! (a resource and a name) whose key reads back from its text form.

#![no_main]

use std::sync::LazyLock;

use kelemetry_core::resource_map::ResourceMap;
use kelemetry_core::{NoLookup, Object};
use kelemetry_fuzz::{check_key_round_trip, sample_objects};
use kelemetry_linkers::{RuleSet, RuleSetError};
use libfuzzer_sys::fuzz_target;

static OBJECTS: LazyLock<Vec<Object>> = LazyLock::new(sample_objects);
static RESOURCES: LazyLock<std::sync::Arc<ResourceMap>> =
    LazyLock::new(|| std::sync::Arc::new(ResourceMap::builtin()));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = match RuleSet::parse(text, "fuzz.yaml") {
        Ok(rules) => rules,
        Err(RuleSetError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "an invalid file has errors");
            for error in &errors {
                assert!(
                    error.position.line >= 1 && error.position.column >= 1,
                    "{error}"
                );
                assert!(error.to_string().starts_with("fuzz.yaml:"), "{error}");
            }
            return;
        }
        Err(other) => panic!("parsing text cannot fail otherwise: {other}"),
    };
    for (index, rule) in rules.rules().iter().enumerate() {
        assert_eq!(rule.number(), index + 1, "rules are numbered in file order");
        assert!(rule.position().line >= 1 && rule.position().column >= 1);
    }
    for linker in rules.linkers(RESOURCES.clone()) {
        for object in OBJECTS.iter() {
            let links = futures::executor::block_on(linker.link(object, &NoLookup));
            let again = futures::executor::block_on(linker.link(object, &NoLookup));
            match (links, again) {
                (Ok(links), Ok(again)) => {
                    assert_eq!(links, again, "linking is deterministic");
                    for link in &links {
                        assert!(
                            !link.object.key.resource.is_empty(),
                            "a link without a resource"
                        );
                        assert!(!link.object.key.name.is_empty(), "a link without a name");
                        check_key_round_trip(&link.object.key);
                    }
                }
                (Err(first), Err(second)) => assert_eq!(first.to_string(), second.to_string()),
                (first, second) => panic!("linking is deterministic: {first:?} then {second:?}"),
            }
        }
    }
});
