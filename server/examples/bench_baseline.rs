//! Benchmark baseline: the smallest actix-web server answering 204, with the
//! same worker count as the sidecar, so `make bench` can quote the sidecar's
//! figures as ratios to it. Not part of the product.
//!
//!     bench_baseline 127.0.0.1:PORT WORKERS

use actix_web::{web, App, HttpResponse, HttpServer};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8399".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    actix_rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new().default_service(web::to(|| async { HttpResponse::NoContent().finish() }))
        })
        .workers(workers)
        .bind(bind)?
        .run()
        .await
    })
}
