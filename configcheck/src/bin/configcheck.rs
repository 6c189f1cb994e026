//! `configcheck`: see the library's [`configcheck::cli`].

fn main() -> std::process::ExitCode {
    configcheck::cli::main()
}
