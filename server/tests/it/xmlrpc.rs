//! resalloc's XML-RPC protocol: a Python standard-library client that speaks it like Copr's
//! backend, and raw requests for the edges (malformed bodies, wrong types, limits).

use std::time::Duration;

use copr_pools::audit::Actor;
use copr_pools::engine::Engine;
use copr_pools::engine::model::{PoolConfig, Tag};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{TestDb, each_db, engine_settings, repo_root};

/// The engine and an XML-RPC listener on a free loopback port.
pub struct Rpc {
    pub url: String,
    pub engine: Engine,
    pub stop: CancellationToken,
}

impl Drop for Rpc {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn start(t: &TestDb, pools: &[PoolConfig], max_body: usize) -> Rpc {
    copr_pools::pools::save(&t.db, pools, &Actor::System)
        .await
        .unwrap();
    let engine = Engine::new(t.db.clone(), engine_settings(t.dir.path()));
    let stop = CancellationToken::new();
    let (e, s) = (engine.clone(), stop.clone());
    tokio::spawn(async move { e.run(s).await });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = copr_pools::xmlrpc::router(engine.clone(), max_body);
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    Rpc { url, engine, stop }
}

/// The XML-RPC API of `engine` on a free loopback port; returns its URL.
pub async fn serve(engine: &Engine) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = copr_pools::xmlrpc::router(engine.clone(), 1 << 20);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

pub fn local_pool(name: &str, output: &str) -> PoolConfig {
    let mut p = PoolConfig::new(name, format!("echo {output}"), "true");
    p.tags = vec![Tag::new("copr_builder", 0), Tag::new("arch_x86_64", 0)];
    p.max_prealloc = 2;
    p.max_starting = 2;
    p
}

async fn post(url: &str, body: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .post(format!("{url}/RPC2"))
        .header("content-type", "text/xml")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn copr_backends_python_client_takes_collects_and_closes() {
    each_db(|t| async move {
        let rpc = start(&t, &[local_pool("local", "10.1.2.3")], 1 << 20).await;
        let script = repo_root().join("server/tests/it/resalloc_client.py");
        let url = rpc.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .arg(script)
                .arg(url)
                .arg("copr")
                .arg("3")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let methods: Vec<&str> = report["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        for m in [
            "takeTicket",
            "collectTicket",
            "waitTicket",
            "closeTicket",
            "system.listMethods",
        ] {
            assert!(methods.contains(&m), "{methods:?}");
        }
        for b in report["builds"].as_array().unwrap() {
            assert_eq!(b["type"], "int");
            assert_eq!(b["output"], "10.1.2.3\n");
            assert_eq!(b["by_string"], "10.1.2.3\n");
            assert_eq!(b["wait"], "10.1.2.3\n");
            assert_eq!(
                (b["closed"].as_bool(), b["failed"].as_bool()),
                (Some(false), Some(false))
            );
            assert_eq!(
                (b["close"].clone(), b["close_again"].clone()),
                (Value::Null, Value::Null)
            );
            assert_eq!(b["after_close"], true);
        }
        let unknown = &report["unknown"];
        for k in ["ready", "output", "closed", "failed"] {
            assert_eq!(
                unknown[k],
                Value::Null,
                "unknown tickets collect as all-nil, not a fault"
            );
        }
        assert!(report["help"].as_str().unwrap().contains("tags"));
        assert!(report["fault"].as_str().unwrap().contains("noSuchMethod"));
    })
    .await;
}

#[tokio::test]
async fn python_style_requests_parse_and_responses_use_nil_and_base64() {
    each_db(|t| async move {
        let rpc = start(&t, &[local_pool("local", "10.9.9.9")], 1 << 20).await;
        // Exactly what Python's xmlrpc.client sends, whitespace and all.
        let take = "<?xml version='1.0'?>\n<methodCall>\n<methodName>takeTicket</methodName>\n<params>\n<param>\n\
                    <value><array><data>\n<value><string>arch_x86_64</string></value>\n<value><string>copr_builder</string></value>\n\
                    </data></array></value>\n</param>\n<param>\n<value><string>@copr/p--u</string></value>\n</param>\n</params>\n</methodCall>\n";
        let (status, body) = post(&rpc.url, take).await;
        assert_eq!(status, 200);
        assert!(body.contains("<methodResponse>"), "{body}");
        let id: i64 = body.split(['>', '<']).find_map(|s| s.trim().parse().ok()).expect("an id");

        let collect = format!("<?xml version='1.0'?>\n<methodCall><methodName>collectTicket</methodName><params><param><value><int>{id}</int></value></param></params></methodCall>");
        let body = crate::support::eventually("the ticket to be ready", Duration::from_secs(20), || {
            let (url, c) = (rpc.url.clone(), collect.clone());
            async move {
                let (_, body) = post(&url, &c).await;
                body.contains("<base64>").then_some(body)
            }
        })
        .await;
        assert!(body.contains("<name>ready</name><value><boolean>1</boolean></value>"), "{body}");
        assert!(body.contains("<base64>MTAuOS45LjkK</base64>"), "{body}");

        let unknown = "<methodCall><methodName>collectTicket</methodName><params><param><value><string>424242</string></value></param></params></methodCall>";
        let (_, body) = post(&rpc.url, unknown).await;
        assert!(!body.contains("<fault>"), "{body}");
        assert_eq!(body.matches("<nil").count(), 4, "{body}");
    })
    .await;
}

#[tokio::test]
async fn bad_requests_get_faults_or_http_errors_never_a_crash() {
    let t = TestDb::new(crate::support::Kind::Sqlite).await;
    let rpc = start(&t, &[], 4096).await;
    for (body, expect) in [
        ("<methodCall><methodName>takeTicket", "malformed"),
        ("not xml at all", "malformed"),
        (
            "<methodCall><methodName>takeTicket</methodName><params><param><value><string>x</string></value></param></params></methodCall>",
            "array of strings",
        ),
        (
            "<methodCall><methodName>takeTicket</methodName><params></params></methodCall>",
            "tags are required",
        ),
        (
            "<methodCall><methodName>collectTicket</methodName><params><param><value><string>abc</string></value></param></params></methodCall>",
            "not a ticket id",
        ),
        (
            "<methodCall><methodName>closeTicket</methodName><params><param><value><boolean>1</boolean></value></param></params></methodCall>",
            "int or a numeric string",
        ),
        (
            "<methodCall><methodName>rm -rf</methodName><params></params></methodCall>",
            "not supported",
        ),
    ] {
        let (status, text) = post(&rpc.url, body).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            text.contains("<fault>") && text.contains(expect),
            "{body} -> {text}"
        );
    }
    let big = format!(
        "<methodCall><methodName>x</methodName><params><param><value><string>{}</string></value></param></params></methodCall>",
        "a".repeat(10_000)
    );
    let (status, _) = post(&rpc.url, &big).await;
    assert_eq!(status, 413, "bodies over xmlrpc_max_body_bytes are refused");
    let status = reqwest::get(format!("{}/RPC2", rpc.url))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 405);
    // The server still answers after all of that.
    let (status, text) = post(
        &rpc.url,
        "<methodCall><methodName>system.listMethods</methodName><params></params></methodCall>",
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("takeTicket"));
    drop(rpc);
    t.cleanup().await;
}

#[tokio::test]
async fn wait_ticket_long_polls_without_a_thread_per_waiter() {
    let t = TestDb::new(crate::support::Kind::Sqlite).await;
    let mut pool = local_pool("slow", "10.0.0.7");
    pool.max_prealloc = 0;
    pool.start_on_waiting = true;
    pool.max = 60;
    pool.max_starting = 60;
    pool.cmd_new = "sleep 1; echo 10.0.0.7".into();
    let rpc = start(&t, &[pool], 1 << 20).await;
    let client = copr_pools::bench::RpcClient::new(&format!("{}/RPC2", rpc.url));
    let mut waits = Vec::new();
    for i in 0..50 {
        let c = client.clone();
        waits.push(tokio::spawn(async move {
            let id = c
                .take(&["arch_x86_64", "copr_builder"], &format!("s{i}"))
                .await
                .unwrap();
            c.call("waitTicket", vec![dxr::Value::Integer(id)])
                .await
                .unwrap()
        }));
    }
    for w in waits {
        let out = tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("waitTicket returned")
            .unwrap();
        assert_eq!(out, dxr::Value::Base64(b"10.0.0.7\n".to_vec()));
    }
    drop(rpc);
    t.cleanup().await;
}

#[tokio::test]
async fn fake_cloud_machines_start_through_the_engine() {
    let t = TestDb::new(crate::support::Kind::Sqlite).await;
    let cloud = t.dir.path().join("cloud");
    let root = repo_root();
    let mut pool = PoolConfig::new(
        "fake",
        format!(
            "FAKE_CLOUD_DIR={} {}/fake-cloud/fake-new",
            cloud.display(),
            root.display()
        ),
        format!(
            "FAKE_CLOUD_DIR={} {}/fake-cloud/fake-delete",
            cloud.display(),
            root.display()
        ),
    );
    pool.tags = vec![Tag::new("copr_builder", 0)];
    pool.max_prealloc = 1;
    pool.named_counters = vec!["ip".into()];
    let rpc = start(&t, &[pool], 1 << 20).await;
    let client = copr_pools::bench::RpcClient::new(&format!("{}/RPC2", rpc.url));
    let id = client.take(&["copr_builder"], "s").await.unwrap();
    let out = client
        .call("waitTicket", vec![dxr::Value::Integer(id)])
        .await
        .unwrap();
    let dxr::Value::Base64(data) = out else {
        panic!("{out:?}")
    };
    let address = String::from_utf8(data).unwrap();
    assert!(address.starts_with("10.0.0."), "{address}");
    let log = std::fs::read_to_string(t.dir.path().join("logs/hooks/000001_alloc")).unwrap();
    assert!(log.contains("fake-new: creating fake_00000001_"), "{log}");
    drop(rpc);
    t.cleanup().await;
}

/// A `closeTicket` call, as a hostile page would post it.
fn close_call(id: i32) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>closeTicket</methodName><params>\
         <param><value><int>{id}</int></value></param></params></methodCall>"
    )
}

async fn is_closed(client: &copr_pools::bench::RpcClient, id: i32) -> bool {
    let dxr::Value::Struct(m) = client
        .call("collectTicket", vec![dxr::Value::Integer(id)])
        .await
        .unwrap()
    else {
        panic!("collectTicket answers a struct")
    };
    m["closed"] == dxr::Value::Boolean(true)
}

#[tokio::test]
async fn browsers_cannot_call_the_xmlrpc_api() {
    let t = TestDb::new(crate::support::Kind::Sqlite).await;
    let rpc = start(&t, &[], 1 << 20).await;
    let client = copr_pools::bench::RpcClient::new(&format!("{}/RPC2", rpc.url));
    let id = client.take(&["copr_builder"], "@team/p--u").await.unwrap();

    // The headers Chromium sends for each way a page can post to another port of this host.
    let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    let browser_requests: &[(&str, &[(&str, &str)])] = &[
        (
            "fetch(url, {method: 'POST', mode: 'no-cors', body})",
            &[
                ("content-type", "text/plain;charset=UTF-8"),
                ("origin", "http://127.0.0.1:3000"),
                ("referer", "http://127.0.0.1:3000/"),
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "empty"),
                ("accept", "*/*"),
                ("user-agent", chrome),
            ],
        ),
        (
            "<form method=post enctype=text/plain> on another site",
            &[
                ("content-type", "text/plain"),
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
                ("sec-fetch-user", "?1"),
                ("user-agent", chrome),
            ],
        ),
        (
            "a form post from a sandboxed frame",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "null"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
        (
            "an old browser without fetch metadata",
            &[("content-type", "text/plain")],
        ),
        (
            "a CORS request that declares text/xml",
            &[
                ("content-type", "text/xml"),
                ("origin", "http://127.0.0.1:3000"),
            ],
        ),
        (
            "text/xml with Sec-Fetch-Site",
            &[
                ("content-type", "text/xml"),
                ("sec-fetch-site", "same-origin"),
            ],
        ),
    ];
    let http = reqwest::Client::new();
    for (what, headers) in browser_requests {
        let mut req = http.post(format!("{}/RPC2", rpc.url)).body(close_call(id));
        for (k, v) in *headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{what}");
        let text = res.text().await.unwrap();
        assert!(
            text.starts_with("Refused: ") && text.trim_end().lines().count() == 1,
            "{what}: {text:?}"
        );
        assert!(!is_closed(&client, id).await, "{what} closed the ticket");
    }

    // resalloc's client (Python's xmlrpc.client: text/xml, no Origin) still works.
    client
        .call("closeTicket", vec![dxr::Value::Integer(id)])
        .await
        .unwrap();
    assert!(is_closed(&client, id).await);
    drop(rpc);
    t.cleanup().await;
}

#[tokio::test]
async fn hostile_xml_gets_a_fast_answer_and_the_server_keeps_serving() {
    let t = TestDb::new(crate::support::Kind::Sqlite).await;
    let head =
        "<?xml version='1.0'?><methodCall><methodName>takeTicket</methodName><params><param>";
    let tail = "</param></params></methodCall>";
    let deep = format!(
        "{head}{}<value><string>x</string></value>{}{tail}",
        "<value><array><data>".repeat(20_000),
        "</data></array></value>".repeat(20_000)
    );
    let long_string = format!(
        "{head}<value><array><data><value><string>copr_builder</string></value></data></array></value>\
         </param><param><value><string>{}</string></value>{tail}",
        "s".repeat(1 << 20)
    );
    let members = format!(
        "{head}<value><array><data>{}</data></array></value>{tail}",
        "<value><string>t</string></value>".repeat(100_000)
    );
    let method_name = format!(
        "<?xml version='1.0'?><methodCall><methodName>{}</methodName><params></params></methodCall>",
        "m".repeat(1 << 20)
    );
    // With the default body limit, and with one large enough to let every body through to
    // the XML checks.
    for max_body in [1usize << 20, 64 << 20] {
        let rpc = start(&t, &[], max_body).await;
        let http = reqwest::Client::new();
        for (what, body) in [
            ("20,000 nested arrays", &deep),
            ("a 1 MiB string", &long_string),
            ("100,000 array members", &members),
            ("a 1 MiB method name", &method_name),
        ] {
            // The best of three, so a busy test machine does not decide the figure.
            let mut best = Duration::MAX;
            for _ in 0..3 {
                let started = std::time::Instant::now();
                let res = http
                    .post(format!("{}/RPC2", rpc.url))
                    .header("content-type", "text/xml")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{what} (limit {max_body}): {e}"));
                let status = res.status();
                let text = res.text().await.unwrap_or_default();
                best = best.min(started.elapsed());
                assert!(
                    status.is_client_error() || (status == 200 && text.contains("<fault>")),
                    "{what} (limit {max_body}): {status} {}",
                    &text[..text.len().min(300)]
                );
            }
            eprintln!("{what}, body limit {max_body}: answered in {best:?}");
            assert!(
                best < Duration::from_millis(100),
                "{what} (limit {max_body}) took {best:?}"
            );
            let (status, text) = post(
                &rpc.url,
                "<methodCall><methodName>system.listMethods</methodName><params></params></methodCall>",
            )
            .await;
            assert!(
                status == 200 && text.contains("takeTicket"),
                "still serving after {what}"
            );
        }
        drop(rpc);
    }
    t.cleanup().await;
}

#[tokio::test]
async fn wait_ticket_callers_who_hang_up_leave_no_waiter_behind() {
    use tokio::io::AsyncWriteExt;
    let t = TestDb::new(crate::support::Kind::Sqlite).await;
    // No pools: every ticket waits for ever.
    let rpc = start(&t, &[], 1 << 20).await;
    let client = copr_pools::bench::RpcClient::new(&format!("{}/RPC2", rpc.url));
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            client
                .take(&["copr_builder"], &format!("s{i}"))
                .await
                .unwrap(),
        );
    }
    let addr = rpc.url.trim_start_matches("http://").to_string();
    let mut sockets = Vec::new();
    for i in 0..500 {
        let body = format!(
            "<?xml version='1.0'?><methodCall><methodName>waitTicket</methodName><params>\
             <param><value><int>{}</int></value></param></params></methodCall>",
            ids[i % ids.len()]
        );
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            format!(
                "POST /RPC2 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        sockets.push(s);
    }
    let waiters = rpc.engine.clone();
    crate::support::eventually(
        "500 calls to wait on 20 tickets",
        Duration::from_secs(30),
        || {
            let n = waiters.waiters().len();
            async move { (n == 20).then_some(()) }
        },
    )
    .await;
    drop(sockets);
    crate::support::eventually("every waiter to be gone", Duration::from_secs(30), || {
        let n = waiters.waiters().len();
        async move { (n == 0).then_some(()) }
    })
    .await;
    // The API is none the worse for it.
    assert!(!is_closed(&client, ids[0]).await);
    drop(rpc);
    t.cleanup().await;
}
