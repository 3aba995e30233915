//! `netxdp`: see `netxdp --help`, or the README.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use netxdp::{cli::Cli, commands};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("netxdp: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command, cli.verbose)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<netxdp::process::StdoutClosed>() => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netxdp: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,netxdp=info",
        // Kernel-side records carry the eBPF crate's module path as their target.
        1 => "info,netxdp=debug,net_ebpf=debug",
        _ => "debug,netxdp=trace,net_ebpf=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(verbose > 0)
        .init();
}
