//! The benchmark's ceiling: a plain actix-web handler answering 200 with one header, with the
//! same worker count as the bridge. Usage: plain_actix PORT
use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(18090);
    HttpServer::new(|| {
        App::new().route(
            "/auth/verify",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .insert_header(("X-Auth-Request-User", "alice"))
                    .finish()
            }),
        )
    })
    .workers(2)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
