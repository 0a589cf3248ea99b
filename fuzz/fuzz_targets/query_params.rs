//! The HTTP API's query parameters: bytes as the query string of `GET /api/traces` → decoded as axum's `Query`
//! decodes it (`serde_urlencoded`) → `kelemetry_query::http::parse_find_query`, what the handler runs. Checks: a
//! search that parses has the mode its `service` names (else the default), the limit its `limit` says (else 0),
//! the cluster of its `operation` unless a `cluster` tag overrides it, a range from `start`/`end` (else all
//! time), and every `tag=` was `key:value`; a refused one says why.

#![no_main]

use jiff::Timestamp;
use kelemetry_query::DisplayMode;
use kelemetry_query::http::parse_find_query;
use libfuzzer_sys::fuzz_target;

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    let find = match parse_find_query(params.clone()) {
        Ok(find) => find,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    let mode = param(&params, "service").map_or(Some(DisplayMode::DEFAULT), DisplayMode::from_name);
    assert_eq!(Some(find.mode), mode, "the mode of service=");
    let limit = param(&params, "limit").map_or(Ok(0), str::parse::<usize>);
    assert_eq!(Ok(find.limit), limit, "limit=");
    let tags_name_cluster = params
        .iter()
        .any(|(key, value)| key == "tag" && value.starts_with("cluster:"))
        || param(&params, "tags").is_some_and(|tags| tags.contains("cluster"));
    if !tags_name_cluster {
        assert_eq!(
            find.objects.cluster.as_deref(),
            param(&params, "operation"),
            "the cluster of operation="
        );
    }
    for (key, value) in &params {
        assert!(
            key != "tag" || value.contains(':'),
            "tag={value:?} was taken"
        );
    }
    let micros = |name| {
        param(&params, name).map(|text| {
            let micros: i64 = text.parse().expect("a range that parsed");
            Timestamp::from_microsecond(micros).expect("a time that parsed")
        })
    };
    assert_eq!(
        find.from,
        micros("start").unwrap_or(Timestamp::MIN),
        "start="
    );
    assert_eq!(find.to, micros("end").unwrap_or(Timestamp::MAX), "end=");
});
