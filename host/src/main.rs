use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = pdpp_host::cli::Cli::parse();
    let code = pdpp_host::cli::main(cli).await;
    std::process::exit(code);
}
