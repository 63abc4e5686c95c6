//! The `pdpp-host` binary: the command line over the `pdpp_host` library.

use clap::Parser;

mod cli;

/// mimalloc instead of glibc's malloc: see docs/architecture.md, "Allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // Library diagnostics (plugin loading, runs) go to stderr; `RUST_LOG`
    // (e.g. `pdpp_host=debug`) changes how much.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = cli::Cli::parse();
    let code = cli::main(cli).await;
    std::process::exit(code);
}
