fn main() -> std::process::ExitCode {
    edgerec::app::cli::main()
}
