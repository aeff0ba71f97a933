//! The `autorisen` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    autorisen::cli::run(autorisen::cli::Cli::parse())
}
