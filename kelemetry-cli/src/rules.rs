//! `kelemetry rules`: check a linking rule file, print the built-in rules; and the linkers a replay uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use kelemetry_core::{Linker, ResourceMap};
use kelemetry_linkers::rules::DEFAULT_RULES;
use kelemetry_linkers::{LinkerSetConfig, RuleChoice, RuleSet, RuleSetError};

use crate::CliError;

/// Arguments of `kelemetry rules`.
#[derive(Debug, Args)]
pub(crate) struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Validate a rule file: print OK and what each rule does, or every mistake with its line and column.
    Check {
        /// The rule file (YAML).
        file: PathBuf,
    },
    /// Print the built-in rules (a starting point for a rule file of your own).
    Default,
}

/// `kelemetry rules`.
pub(crate) fn rules(args: RulesArgs) -> Result<(), CliError> {
    match args.command {
        RulesCommand::Check { file } => check(&file),
        RulesCommand::Default => {
            print!("{DEFAULT_RULES}");
            Ok(())
        }
    }
}

fn check(file: &Path) -> Result<(), CliError> {
    match RuleSet::read(file) {
        Ok(rules) => {
            println!("{}: OK, {} rule(s)", file.display(), rules.len());
            for rule in rules.rules() {
                println!("  {} {}: {rule}", rule.number(), rule.name());
            }
            Ok(())
        }
        Err(RuleSetError::Invalid(errors)) => {
            for error in &errors {
                eprintln!("{error}");
            }
            Err(CliError::Usage(format!(
                "{}: {} error(s); no rule was accepted",
                file.display(),
                errors.len()
            )))
        }
        Err(err) => Err(CliError::Usage(err.to_string())),
    }
}

/// The linkers of a replay: owner references, the parent-link annotation, Pod to Node, and the rules of
/// `rules_file` (the built-in rules when none is given).
pub(crate) fn replay_linkers(
    resources: Arc<ResourceMap>,
    rules_file: Option<&Path>,
) -> Result<Vec<Arc<dyn Linker>>, CliError> {
    let mut linkers = LinkerSetConfig::default();
    if let Some(file) = rules_file {
        linkers.rules = RuleChoice::File(file.to_owned());
    }
    linkers
        .build(resources)
        .map_err(|err| CliError::Usage(err.to_string()))
}
