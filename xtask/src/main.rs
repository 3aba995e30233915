//! `cargo xtask`: set up the toolchain, build the XDP object and the CLI, run, test, bench,
//! install and package.
//!
//! The eBPF crate is built for bpfel-unknown-none by a toolchain that has a `core` for that
//! target (see [`toolchain`]), then the host crates are built embedding the object.

mod build;
mod package;
mod toolchain;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "netxdp's build, run, test and bench tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing to build eBPF (Debian packages, bpf-linker); idempotent.
    Setup,
    /// Build the XDP object, then the netxdp binary embedding it.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run `netxdp ARGS` as root (through sudo when not root).
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for netxdp, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// The whole suite: format and lint checks, unit tests, kernel tests, end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (a test name filter, `--nocapture`...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Per-packet cost of the XDP program from BPF_PROG_TEST_RUN, beside an XDP_PASS floor.
    Bench,
    /// Updates under load: floods, `apply` of two 10,000-rule sets in turn and rule changes
    /// on a 1,000-rule set, numbered datagrams; release build (the suite runs it for 4 s).
    Soak {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// `cargo fmt --check` and `cargo clippy -D warnings` over every crate, eBPF included.
    Lint,
    /// Build release, then install netxdp (PREFIX/sbin), a man page per command
    /// (PREFIX/share/man/man8) and bash, zsh and fish completions; idempotent.
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Stage the install under this directory (DESTDIR/PREFIX/...), for packagers.
        #[arg(long)]
        destdir: Option<PathBuf>,
    },
    /// Build the Debian package (cargo-deb) into target/debian/: binary, man pages,
    /// completions, netxdp@.service and /etc/netxdp/.
    Deb {
        /// Then install it into this machine with dpkg, check it works, and purge it (root).
        #[arg(long)]
        check: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Setup => {
            toolchain::setup()?;
            Ok(())
        }
        Task::Build { release } => build::all(&root, release).map(|_| ()),
        Task::Run { release, args } => {
            let binary = build::all(&root, release)?;
            run_as_root(&binary, &args)
        }
        Task::Test { args } => {
            let object = build::ebpf(&root)?;
            lint(&root, &object)?;
            let mut test = host_cargo(&root, &object);
            test.args(["test", "--workspace"]);
            if !is_root() {
                // Kernel tests need root: run the test binaries, not the build, under sudo.
                test.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
            }
            if !args.is_empty() {
                test.arg("--").args(&args);
            }
            run(&mut test)?;
            if args.is_empty() && !is_root() && !in_ci() {
                // As the kernel tests do without root: loudly, and only outside CI.
                eprintln!("SKIPPED the package check: dpkg needs root (under CI=true this fails)");
                Ok(())
            } else if args.is_empty() {
                package::check(&root).context("the package check (`cargo xtask deb --check`)")
            } else {
                eprintln!(
                    "xtask test: the package check runs with the whole suite, or alone as \
                     `cargo xtask deb --check`"
                );
                Ok(())
            }
        }
        Task::Bench => {
            let object = build::ebpf(&root)?;
            let mut bench = host_cargo(&root, &object);
            bench.args(["bench", "--package", "net-user", "--bench", "xdp"]);
            if !is_root() {
                bench.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
            }
            run(&mut bench)
        }
        Task::Soak { seconds } => {
            let object = build::ebpf(&root)?;
            let mut soak = host_cargo(&root, &object);
            soak.args([
                "test",
                "--release",
                "--package",
                "net-user",
                "--test",
                "soak",
            ])
            .args(["--", "--nocapture"])
            .env("NETXDP_SOAK_SECONDS", seconds.to_string());
            if !is_root() {
                soak.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
            }
            run(&mut soak)
        }
        Task::Lint => {
            let object = build::ebpf(&root)?;
            lint(&root, &object)
        }
        Task::Install { prefix, destdir } => package::install(&root, &prefix, destdir.as_deref()),
        Task::Deb { check: true } => package::check(&root),
        Task::Deb { check: false } => package::deb(&root).map(|_| ()),
    }
}

fn lint(root: &Path, object: &Path) -> Result<()> {
    run(host_cargo(root, object).args(["fmt", "--all", "--", "--check"]))
        .context("code is not formatted: run `cargo fmt --all`")?;
    run(host_cargo(root, object).args([
        "fmt",
        "--manifest-path",
        "net-ebpf/Cargo.toml",
        "--",
        "--check",
    ]))
    .context("net-ebpf is not formatted: run `cargo fmt --manifest-path net-ebpf/Cargo.toml`")?;
    run(host_cargo(root, object).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// The workspace root (this crate's parent directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The cargo that runs xtask, for the host crates, told where the XDP object is.
fn host_cargo(root: &Path, object: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).env("NETXDP_EBPF_OBJECT", object);
    command
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run_as_root(binary: &Path, args: &[OsString]) -> Result<()> {
    let mut command = if is_root() {
        Command::new(binary)
    } else {
        eprintln!("xtask: netxdp needs root; running it through sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg(binary);
        sudo
    };
    let status = command
        .args(args)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// Runs a command, failing with its name when it fails.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
