//! The `wardsync` binary: parse the command line, set up logging, dispatch.

use clap::Parser;
use wardsync::cli::failure::exit;

/// mimalloc: the daemons allocate and free many small buffers per change
/// (records, encodings, storage nodes); glibc's allocator took a quarter
/// of the ward's time under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = match wardsync::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version on stdout with success; a usage error on stderr
        // with the usage status (README, "Exit status").
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    wardsync::cli::init_tracing(&cli);
    wardsync::cli::stop_on_panic();
    #[cfg(feature = "mutation")]
    let _bug = match wardsync::mutation::from_env() {
        Ok(bug) => bug,
        Err(e) => {
            eprintln!("error: WARDSYNC_MUTATION: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(wardsync::cli::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => wardsync::cli::failure::report(&e),
    }
}
