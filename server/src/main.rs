//! `pegasus_server config.ini -app_list meta|replica|collector`: see [`pegasus_server::start`].

fn main() -> std::process::ExitCode {
    pegasus_server::start::main()
}
