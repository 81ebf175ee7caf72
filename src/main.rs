fn main() -> std::process::ExitCode {
    edgerec::cli::main()
}
