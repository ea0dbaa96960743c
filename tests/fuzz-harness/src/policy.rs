//! Fuzz target `policy_parse`: parse arbitrary bytes as a safety policy and,
//! when it parses, check the reference automotive system against it. Any
//! panic is a bug: policies are hand-edited files.

use std::sync::OnceLock;

use bulkhead_policy::{parse, validate_against};
use bulkhead_sdf::model::SystemDescription;

/// The QEMU reference system, parsed once.
fn system() -> &'static Option<SystemDescription> {
    static SYS: OnceLock<Option<SystemDescription>> = OnceLock::new();
    SYS.get_or_init(|| {
        bulkhead_sdf::parse(include_str!(
            "../../../system/automotive/qemu_virt_aarch64.system"
        ))
        .ok()
    })
}

/// Run the policy parser (and, on success, the system check) on `data`.
pub fn policy_parse(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match parse(src) {
        Err(errs) => {
            assert!(!errs.is_empty(), "refused without a diagnostic");
            for e in errs {
                let _ = e.render("fuzz.toml");
            }
        }
        Ok(policy) => {
            for d in validate_against(&policy, &SystemDescription::default()) {
                let _ = d.render("fuzz.toml");
            }
            if let Some(sys) = system() {
                for d in validate_against(&policy, sys) {
                    let _ = d.render("fuzz.toml");
                }
            }
        }
    }
}
