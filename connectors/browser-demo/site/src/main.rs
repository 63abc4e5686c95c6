//! `browser-demo-site [ADDR]`: serve the demo reading-list site (default
//! `127.0.0.1:0`, a free port) and print `http://ADDR` on the first line.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("http://{}", listener.local_addr()?);
    browser_demo_site::serve(listener).await
}
