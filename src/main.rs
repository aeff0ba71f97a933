//! The `autorisen` binary: parse the command line and hand over to the library.

use clap::Parser;

/// mimalloc: the service allocates many small, short-lived objects per request across threads,
/// where it is markedly faster than the system allocator and returns memory to the OS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    autorisen::cli::run(autorisen::cli::Cli::parse())
}
