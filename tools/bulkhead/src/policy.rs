//! Reading a safety policy for the subcommands that take `--policy`.

use std::path::Path;
use std::process::ExitCode;

use bulkhead_inspect::graph::Domains;
use bulkhead_policy::Policy;
use bulkhead_sdf::SystemDescription;

use crate::EXIT_USAGE;

/// Read, parse and validate the policy at `path` against `sys`; print every
/// diagnostic. Errors end the command (exit 1; 2 when unreadable).
pub(crate) fn load(path: &Path, sys: &SystemDescription) -> Result<Policy, ExitCode> {
    let shown = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("error: cannot read policy '{shown}': {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let policy = bulkhead_policy::parse(&src).map_err(|diags| {
        for d in &diags {
            eprintln!("{}", d.render(&shown));
        }
        eprintln!("{shown}: invalid policy");
        ExitCode::from(1)
    })?;
    let diags = bulkhead_policy::validate_against(&policy, sys);
    for d in &diags {
        eprintln!("{}", d.render(&shown));
    }
    if diags.iter().any(|d| d.is_error()) {
        eprintln!("{shown}: the policy does not fit this system");
        return Err(ExitCode::from(1));
    }
    Ok(policy)
}

/// The policy's domains, as `graph` clusters them.
pub(crate) fn domains_for_graph(path: &Path, sys: &SystemDescription) -> Result<Domains, ExitCode> {
    let policy = load(path, sys)?;
    Ok(Domains {
        domains: policy
            .domains
            .iter()
            .map(|d| {
                (
                    d.name.value.clone(),
                    d.members.iter().map(|m| m.value.clone()).collect(),
                )
            })
            .collect(),
    })
}
