//! `vmballoon-serve`: the simulator's host and guest models as a JSON-lines server for the
//! emulation harness (`cargo xtask emulate`). See [`vmballoon_sim::serve`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match vmballoon_sim::serve::serve(stdin.lock(), stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmballoon-serve: {e}");
            ExitCode::FAILURE
        }
    }
}
