//! Placeholder: being written.
use pdpp_sdk::{Connector, Failure, Run, export_connector};

struct Stub;

impl Connector for Stub {
    fn run(_run: &mut Run) -> Result<(), Failure> {
        Err(Failure::new("not written yet"))
    }
}

export_connector!(Stub);
