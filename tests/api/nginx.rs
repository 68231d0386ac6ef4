//! Forward-auth through a real nginx (`auth_request`), as the README configures it: the app
//! behind nginx sees the identity the bridge vouches for (headers and signed assertion), and
//! nothing a client claims itself.

use crate::helpers::*;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Nginx {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_nginx(bridge: &str) -> Nginx {
    let dir = std::env::temp_dir().join(format!("jb-nginx-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, app_port) = (free_port(), free_port());
    let conf = format!(
        r#"
worker_processes 1;
master_process off; # one process, so killing it leaves no orphaned workers
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    server {{ # the application: echoes what it was told
        listen 127.0.0.1:{app_port};
        location / {{ return 200 "user=$http_x_auth_request_user groups=$http_x_auth_request_groups\n"; }}
        location = /assertion {{ return 200 "assertion=$http_x_jitbridge_assertion\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /_jitbridge_verify {{
            internal;
            proxy_pass {bridge}/auth/verify;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Host $host;
            proxy_buffer_size 16k;
            proxy_busy_buffers_size 16k;
        }}
        location / {{
            auth_request /_jitbridge_verify;
            error_page 401 = @login;
            auth_request_set $jb_user $upstream_http_x_auth_request_user;
            auth_request_set $jb_groups $upstream_http_x_auth_request_groups;
            proxy_set_header X-Auth-Request-User $jb_user;
            proxy_set_header X-Auth-Request-Groups $jb_groups;
            auth_request_set $jb_assertion $upstream_http_x_jitbridge_assertion;
            proxy_set_header X-Jitbridge-Assertion $jb_assertion;
            proxy_pass http://127.0.0.1:{app_port};
        }}
        location @login {{ return 302 {bridge}/login?rd=$request_uri; }}
    }}
}}
"#,
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (scripts/test installs nginx-light)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Nginx { child, port, dir }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_lets_a_logged_in_person_through_with_the_bridges_identity_only() {
    let app = spawn_app().await;
    let nginx = start_nginx(&app.base).await;
    let site = format!("http://127.0.0.1:{}", nginx.port);
    let browser = Browser::new();

    let r = browser.get(&format!("{site}/reports?q=1")).await;
    assert_eq!(r.status(), 302, "no session: sent to log in");
    assert_eq!(location(&r), format!("{}/login?rd=/reports?q=1", app.base));

    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    let r = browser
        .http
        .get(format!("{site}/reports"))
        .header("X-Auth-Request-User", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "user=alice groups=admin,staff\n");

    crate::logout::sign_out(&app.base, &browser).await;
    let r = browser
        .http
        .get(format!("{site}/reports"))
        .header("X-Auth-Request-User", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "after logout the spoofed header gets nobody in"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_passes_the_bridges_assertion_on_and_never_the_clients() {
    let pem = jitbridge::assertion::keys::generate_p256_pem().unwrap();
    let app = spawn_app_with(Options {
        // nginx's $host is the request's host name, without the port.
        extra_toml: format!(
            "[assertion]\nkeys = [{{ kid = \"k1\", private_key = '''{pem}''' }}]\n\
             [[app]]\nhost = \"127.0.0.1\"\naudience = \"nginx-app\"\n"
        ),
        ..Default::default()
    })
    .await;
    let nginx = start_nginx(&app.base).await;
    let site = format!("http://127.0.0.1:{}/assertion", nginx.port);
    let browser = Browser::new();
    assert_eq!(app.login(&browser, "alice").await.status(), 302);
    let seen = |host: &'static str| {
        let req = browser
            .http
            .get(&site)
            .header("Host", host)
            .header("X-Jitbridge-Assertion", "forged-by-the-client");
        async move { req.send().await.unwrap().text().await.unwrap() }
    };

    let body = seen("127.0.0.1").await;
    let token = body.strip_prefix("assertion=").unwrap().trim_end();
    assert!(
        token.starts_with("eyJ"),
        "the bridge's token, not the client's: {body}"
    );
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(claims["aud"], "nginx-app");
    assert_eq!(claims["preferred_username"], "alice");

    // A host that is no app: the bridge sends no assertion, and nginx drops the client's.
    assert_eq!(seen("other.test").await, "assertion=\n");
}
