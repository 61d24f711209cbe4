use std::process::ExitCode;

fn main() -> ExitCode {
    wavectl::cli::main()
}
