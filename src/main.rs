//! The `wardsync` binary: parse the command line, set up logging, dispatch.

use clap::Parser;

/// mimalloc: the daemons allocate and free many small buffers per change
/// (records, encodings, storage nodes); glibc's allocator took a quarter
/// of the ward's time under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = wardsync::cli::Cli::parse();
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
        Err(e) if wardsync::cli::closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
