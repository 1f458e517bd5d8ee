//! The web listener `serve` runs: several threads, each with its own runtime, accepting from
//! one socket. Polls are answered on the connection's thread; pages, forms and event
//! streams on the main runtime, their bodies relayed back. Stopping it lets open requests end.

use std::sync::Arc;
use std::time::Duration;

use copr_pools::audit::Actor;
use copr_pools::auth::session::Store;
use copr_pools::engine::Engine;
use copr_pools::web::{AppState, Listeners, app};
use tokio_util::sync::CancellationToken;

use copr_pools::config::Config;

use crate::auth::dev_config;
use crate::support::{Kind, TestDb, each_db, engine_settings, vault};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The `name=value` of the session cookie an answer sets.
fn session_cookie(res: &reqwest::Response) -> String {
    let set = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .next();
    set.unwrap_or_else(|| panic!("a session cookie: {:?}", res.headers()))
}

/// The app on `t`, served by the listener on `threads` threads (other requests on `main`),
/// with an API token.
struct Served {
    token: String,
    addr: std::net::SocketAddr,
    base: String,
    live: Arc<copr_pools::live::Live>,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<Result<(), String>>,
}

impl Served {
    async fn start(
        t: &TestDb,
        config: Config,
        threads: usize,
        main: tokio::runtime::Handle,
    ) -> Served {
        let token = copr_pools::tokens::create(&t.db, &Actor::User("carol".into()), "copr-prod")
            .await
            .unwrap();
        let store = Store::new(&t.db, t.settings.schema.as_deref())
            .await
            .unwrap();
        let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
        let state = AppState::new(Arc::new(config), t.db.clone(), engine, vault(t));
        let live = state.live.clone();
        let listeners = Listeners::bind("127.0.0.1:0".parse().unwrap(), threads).unwrap();
        assert_eq!(listeners.threads(), threads);
        let addr = listeners.local_addr();
        assert_ne!(addr.port(), 0, "port 0 becomes a free port");
        let stop = CancellationToken::new();
        let serving = tokio::spawn(
            listeners
                .serve(app(state, &store), main, stop.clone())
                .unwrap(),
        );
        Served {
            token,
            addr,
            base: format!("http://{addr}"),
            live,
            stop,
            serving,
        }
    }

    /// Stops the listener as `serve` does (event streams end with it); it must end cleanly.
    async fn stop(self) {
        self.stop.cancel();
        self.live.stop();
        let ended = tokio::time::timeout(Duration::from_secs(20), self.serving)
            .await
            .expect("the listener stops once its connections ended")
            .unwrap();
        assert_eq!(ended, Ok(()));
    }
}

/// A poll for the rules the caller has (`etag`): a 304 with the security headers.
async fn polled_unchanged(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    etag: &reqwest::header::HeaderValue,
) {
    let res = http
        .get(url)
        .bearer_auth(token)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_listener_serves_polls_pages_forms_and_streams_on_its_threads_and_stops_cleanly() {
    each_db(|t| async move {
        let served = Served::start(&t, dev_config(), 3, tokio::runtime::Handle::current()).await;
        let (token, addr, base) = (served.token.clone(), served.addr, served.base.clone());

        // Fresh connections, each taken by whichever thread accepts first: all answered.
        for _ in 0..24 {
            let res = client()
                .get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["x-frame-options"], "DENY");
        }

        // Copr's poll, on the connection's thread: 401 without a token, 200 with an ETag,
        // 304 for it, with the security headers, on one keep-alive connection.
        let http = client();
        let url = format!("{base}/api/v1/routing");
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 401);
        // The token is not remembered yet: this one is answered on the main runtime, and its
        // body, built outside the router, keeps its length through the relay.
        let res = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let etag = res.headers()["etag"].clone();
        let length = res.headers()["content-length"].clone();
        let body = res.text().await.unwrap();
        assert_eq!(length.to_str().unwrap(), body.len().to_string());
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["rules"], serde_json::json!([]));
        for _ in 0..3 {
            polled_unchanged(&http, &url, &token, &etag).await;
        }

        // HEAD: the length, no body.
        let res = http.head(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("content-length"));
        assert!(res.bytes().await.unwrap().is_empty());

        // A JSON answer from the main runtime keeps its length (the body is relayed whole).
        let res = http.get(format!("{base}/api/stats")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let length: usize = res.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(res.bytes().await.unwrap().len(), length);

        // A form: the request body reaches the handler on the main runtime, the session
        // cookie and the redirect come back; the page rendered for that session follows.
        let res = http.get(format!("{base}/auth/dev")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let cookie = session_cookie(&res);
        let html = res.text().await.unwrap();
        let marker = r#"name="csrf_token" value=""#;
        let start = html.find(marker).expect("a form token") + marker.len();
        let csrf = &html[start..start + html[start..].find('"').unwrap()];
        let res = http
            .post(format!("{base}/auth/dev/sign-in"))
            .header("cookie", &cookie)
            .header("sec-fetch-site", "same-origin")
            .form(&[
                ("csrf_token", csrf),
                ("username", "alice"),
                ("groups", "copr-admins"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{:?}", res.text().await);
        assert_eq!(res.headers()["location"], "/");
        let cookie = session_cookie(&res);
        let res = http
            .get(format!("{base}/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = res.text().await.unwrap();
        assert!(page.contains("alice"), "signed in on the page");
        // The shell first, then the resources resolved while it was sent, in later frames.
        let (shell, after) = page.split_once("</html>").expect("the whole page");
        assert!(shell.contains("Builder pools"));
        assert!(
            after.contains("__RESOLVED_RESOURCES["),
            "the streamed resources: {after}"
        );

        // /metrics is for loopback clients: the connection's address reaches the handler.
        let res = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let metrics = res.text().await.unwrap();
        assert!(
            metrics.contains(r#"route="/api/v1/routing""#),
            "polls counted: {metrics}"
        );

        // An event stream stays open across the hand-over; stopping the server ends it (as
        // `serve` does) and the listener's threads finish.
        let mut events = client()
            .get(format!("{base}/events/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        let first = events.chunk().await.unwrap().expect("a first event");
        assert!(!first.is_empty());
        served.stop().await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Ok(Some(_)) = events.chunk().await {}
        })
        .await
        .expect("the event stream ends with the server");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "nothing listens after the stop"
        );
    })
    .await;
}

/// With the main runtime gone, a poll whose token and rules are cached is still answered (on
/// the thread that accepted it), and every other request gets a 500 that says where to look
/// instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_are_answered_on_the_accepting_thread_and_the_rest_on_the_main_runtime() {
    let t = TestDb::new(Kind::Sqlite).await;
    let config = Config {
        // The rules stay fresh for the whole test.
        routing_refresh_ms: 600_000,
        ..dev_config()
    };
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let served = Served::start(&t, config, 2, main.handle().clone()).await;
    let (token, base) = (served.token.clone(), served.base.clone());
    let http = client();
    let url = format!("{base}/api/v1/routing");
    let res = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200, "the first poll asks the database");
    let etag = res.headers()["etag"].clone();
    let res = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    main.shutdown_background();
    for _ in 0..3 {
        polled_unchanged(&client(), &url, &token, &etag).await;
    }
    let res = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert!(res.text().await.unwrap().contains("in its log"));

    served.stop().await;
    t.cleanup().await;
}
