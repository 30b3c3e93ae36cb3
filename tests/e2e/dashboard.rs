//! The dashboard in a real browser: `rectify demo` on a scaled-down Guizhou scenario, headless Chromium
//! (Debian's `/usr/bin/chromium`, or `$CHROMIUM_BIN`) driven over the DevTools protocol. The page must show
//! the API's figures, follow the live feed when commands arrive, drill down to a problem's history, and
//! leave screenshots in `target/tmp/` for people to look at.

use crate::app::binary;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// `rectify demo` with a small scenario, ready (loaded) when [`Demo::start`] returns.
struct Demo {
    url: String,
    token: String,
    data_dir: tempfile::TempDir,
    child: Child,
}

impl Demo {
    fn start(scale: &str) -> Demo {
        let data_dir = tempfile::Builder::new().prefix("rectify-demo-").tempdir().expect("temp dir");
        let mut child = Command::new(binary())
            .args(["demo", "--listen", "127.0.0.1:0", "--scale", scale, "--data-dir"])
            .arg(data_dir.path())
            .env("RUST_LOG", std::env::var("RECTIFY_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("RECTIFY_TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("spawn rectify demo");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let (mut url, mut token) = (None, None);
        // The demo prints its address and token, loads, then says `ready`; a failed load ends the output.
        for line in lines.by_ref() {
            let line = line.expect("read the demo's output");
            if let Some(u) = line.strip_prefix("listening on ") {
                url = Some(u.to_owned());
            } else if line.starts_with("read-only token") {
                token = line.rsplit(' ').next().map(str::to_owned);
            } else if line.starts_with("ready") {
                break;
            }
        }
        // Keep reading so the demo never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let (Some(url), Some(token)) = (url, token) else { panic!("rectify demo did not print its URL and token") };
        Demo { url, token, data_dir, child }
    }

    /// A token made with `rectify token add` in the demo's data dir.
    fn token(&self, role: &str, region: &str) -> String {
        let out = Command::new(binary())
            .args(["token", "add", "--role", role, "--region", region, "--data-dir"])
            .arg(self.data_dir.path())
            .output()
            .expect("run rectify token add");
        assert!(out.status.success(), "token add: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    async fn get(&self, path: &str) -> Value {
        let res =
            reqwest::Client::new().get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Headless Chromium with one page, spoken to over the DevTools protocol.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    socket: Socket,
    next: u64,
    session: String,
}

fn chromium() -> PathBuf {
    if let Some(bin) = std::env::var_os("CHROMIUM_BIN") {
        return bin.into();
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("no Chromium for the dashboard test: `apt-get install chromium` (as .ci/run does) or set CHROMIUM_BIN");
}

impl Browser {
    async fn launch(width: u32, height: u32) -> Browser {
        let profile = tempfile::Builder::new().prefix("rectify-chromium-").tempdir().expect("temp dir");
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--lang=en-US",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium names its DevTools endpoint on stderr; keep draining stderr afterwards.
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut seen = String::new();
        let endpoint = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read chromium's stderr") == 0 {
                panic!("chromium exited before naming its DevTools endpoint:\n{seen}");
            }
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_owned();
            }
            seen.push_str(&line);
        };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stderr.into_inner().take(u64::MAX), &mut std::io::sink());
        });
        let (socket, _) = tokio_tungstenite::connect_async(&endpoint).await.expect("connect to DevTools");
        let mut browser = Browser { child, _profile: profile, socket, next: 0, session: String::new() };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}), false).await;
        let attached = browser
            .call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}), false)
            .await;
        browser.session = attached["sessionId"].as_str().expect("a session id").to_owned();
        browser.resize(width, height).await;
        browser
    }

    /// Sends one command (to the page's session if `page`) and waits for its answer.
    async fn call(&mut self, method: &str, params: Value, page: bool) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({"id": id, "method": method, "params": params});
        if page {
            message["sessionId"] = json!(self.session);
        }
        self.socket.send(Message::text(message.to_string())).await.expect("send to DevTools");
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let frame = self.socket.next().await.expect("DevTools closed").expect("DevTools frame");
                let Message::Text(text) = frame else { continue };
                let value: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
                if value["id"] == json!(id) {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within 60 s"));
        assert!(answer.get("error").is_none(), "{method}: {}", answer["error"]);
        answer["result"].clone()
    }

    async fn resize(&mut self, width: u32, height: u32) {
        let metrics = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        self.call("Emulation.setDeviceMetricsOverride", metrics, true).await;
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}), true).await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value.
    async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params, true).await;
        if let Some(e) = result.get("exceptionDetails") {
            panic!("in the page: {}\n{expression}", e["exception"]["description"].as_str().unwrap_or(&e.to_string()));
        }
        result["result"]["value"].clone()
    }

    /// Waits, inside the page, until `condition` (a JS expression) is truthy, and returns its value.
    async fn until(&mut self, condition: &str) -> Value {
        let script = format!(
            "new Promise((ok, fail) => {{ const t0 = Date.now(); const check = () => {{ let v; try {{ v = ({condition}); }} \
             catch (e) {{}} if (v) ok(v); else if (Date.now() - t0 > 30000) fail(new Error('timed out waiting for: ' + {cond})); \
             else setTimeout(check, 25); }}; check(); }})",
            cond = serde_json::to_string(condition).unwrap()
        );
        self.eval(&script).await
    }

    /// A PNG of the whole page.
    async fn screenshot(&mut self, width: u32) -> Vec<u8> {
        let height = self
            .eval("Math.max(document.documentElement.scrollHeight, document.getElementById('drawer').scrollHeight)")
            .await
            .as_u64()
            .unwrap_or(1200) as u32;
        self.resize(width, height.max(600)).await;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}), true).await;
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("image data")).expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The figures a KPI card shows: its raw value and its text.
const KPIS: &str = "Object.fromEntries([...document.querySelectorAll('[data-kpi]')].map(k => \
    [k.dataset.kpi, [Number(k.querySelector('.value').dataset.value), k.querySelector('.value').textContent]]))";

fn grouped(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn save(name: &str, png: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    eprintln!("dashboard screenshot: {}", path.display());
    path
}

#[tokio::test]
async fn the_dashboard_shows_the_apis_figures_follows_the_feed_and_drills_down_to_a_history() {
    let demo = Demo::start("0.02");
    let mut browser = Browser::launch(1440, 1000).await;
    browser.goto(&format!("{}/#token={}", demo.url, demo.token)).await;

    // Province totals: the cards show exactly the summary's figures, formatted.
    browser.until("document.body.dataset.scope === '520000' && document.querySelector('#live.on')").await;
    let summary = demo.get("/api/v1/stats/summary?region=520000").await;
    let kpis = browser.eval(KPIS).await;
    for key in ["found", "fixed", "open", "overdue", "inspections", "listed"] {
        let api = summary[key].as_i64().unwrap();
        assert_eq!(kpis[key][0].as_i64(), Some(api), "{key}: page {} vs API {api}", kpis[key]);
        assert_eq!(kpis[key][1].as_str(), Some(grouped(api).as_str()), "{key} as shown");
    }
    assert!(summary["found"].as_i64().unwrap() > 100, "a scaled scenario still has problems: {summary}");
    assert_eq!(kpis["fix_rate"][0].as_f64(), summary["fix_rate"].as_f64());
    // The token left the address bar once it was read.
    assert_eq!(browser.eval("location.hash").await, json!("#/520000"));

    // Prefecture bars and enforcement tiles are the API's too.
    let regions = demo.get("/api/v1/stats/regions?region=520000").await;
    let bars = browser
        .eval("[...document.querySelectorAll('#children .row')].map(r => [r.dataset.key, Number(r.dataset.found)])")
        .await;
    let expected: Vec<Value> =
        regions["items"].as_array().unwrap().iter().map(|i| json!([i["region"], i["found"]])).collect();
    assert_eq!(bars, json!(expected));
    let enforcement = demo.get("/api/v1/stats/enforcement?region=520000").await;
    let tiles = browser
        .eval("Object.fromEntries([...document.querySelectorAll('#enforcement .tile')].map(t => [t.dataset.measure, [Number(t.dataset.cases), Number(t.dataset.amount)]]))")
        .await;
    for m in enforcement["measures"].as_array().unwrap() {
        let kind = m["measure"].as_str().unwrap();
        assert_eq!(tiles[kind], json!([m["cases"], m["amount_fen"]]), "{kind}");
    }
    let png = browser.screenshot(1440).await;
    save("dashboard.png", &png);
    browser.resize(1440, 1000).await;

    // One more problem reported through the API: the page follows the live feed, no reload.
    let renders = browser.eval("Number(document.body.dataset.renders)").await.as_i64().unwrap();
    let county = demo.token("county_bureau", "520121");
    let report = json!({
        "region": "520121", "grid": "520121-G01", "sector": "phosphorus_chemical",
        "source": {"name": "开阳磷化工测试公司", "credit_code": ""}, "severity": "major",
        "description": "browser test: phosphogypsum seepage", "discovered_at": chrono::Utc::now().to_rfc3339(),
    });
    demo.post("/api/v1/problems", &county, report).await;
    let found = summary["found"].as_i64().unwrap();
    browser
        .until(&format!("Number(document.querySelector('[data-kpi=found] .value').dataset.value) === {}", found + 1))
        .await;
    assert!(browser.eval("Number(document.body.dataset.renders)").await.as_i64().unwrap() > renders);
    assert_eq!(
        browser.eval("window.rectify.renders > 0 && performance.getEntriesByType('navigation').length").await,
        json!(1)
    );

    // And one more fixed: a problem awaiting acceptance is signed off by its county.
    let pending = demo.get("/api/v1/problems?status=pending_acceptance&limit=1").await;
    let problem = &pending["items"][0];
    let (id, region) = (problem["id"].as_str().unwrap(), problem["region"].as_str().unwrap());
    let acceptor = demo.token("county_bureau", region);
    demo.post(&format!("/api/v1/problems/{id}/acceptance"), &acceptor, json!({"decision": "accept"})).await;
    let fixed = summary["fixed"].as_i64().unwrap();
    browser
        .until(&format!("Number(document.querySelector('[data-kpi=fixed] .value').dataset.value) === {}", fixed + 1))
        .await;
    let now = demo.get("/api/v1/stats/summary?region=520000").await;
    let kpis = browser.eval(KPIS).await;
    for key in ["found", "fixed", "open", "overdue"] {
        assert_eq!(kpis[key][0].as_i64(), now[key].as_i64(), "{key} after the commands");
    }

    // Drill down: prefecture → county → grid → problem → its history.
    browser.eval("document.querySelector('#children .row[data-key=\"520100\"]').click()").await;
    browser.until("document.body.dataset.scope === '520100'").await;
    let guiyang = demo.get("/api/v1/stats/summary?region=520100").await;
    browser
        .until(&format!(
            "Number(document.querySelector('[data-kpi=found] .value').dataset.value) === {}",
            guiyang["found"]
        ))
        .await;
    browser.eval("document.querySelector('#children .row[data-key=\"520121\"]').click()").await;
    browser.until("document.body.dataset.scope === '520121'").await;
    // The county's busiest grid, and in it the problem with the longest history.
    let grids = demo.get("/api/v1/stats/grids?region=520121").await;
    let grid = grids["items"].as_array().unwrap().iter().max_by_key(|g| g["found"].as_i64()).unwrap()["id"].clone();
    let grid = grid.as_str().unwrap();
    browser.eval(&format!("document.querySelector('#children .row[data-key=\"{grid}\"]').click()")).await;
    browser
        .until(&format!(
            "document.body.dataset.scope === '{grid}' && document.querySelector('#ledger tr[data-problem]')"
        ))
        .await;
    let ledger = demo.get(&format!("/api/v1/problems?region=520121&grid={grid}&limit=500")).await;
    let rows =
        browser.eval("[...document.querySelectorAll('#ledger tr[data-problem]')].map(r => r.dataset.problem)").await;
    let ids: Vec<Value> = ledger["items"].as_array().unwrap().iter().map(|p| p["id"].clone()).collect();
    assert_eq!(rows, json!(ids), "the grid's ledger");
    let first = ledger["items"].as_array().unwrap().iter().max_by_key(|p| p["version"].as_u64()).unwrap()["id"].clone();
    let first = first.as_str().unwrap();
    browser.eval(&format!("document.querySelector('#ledger tr[data-problem=\"{first}\"]').click()")).await;
    browser
        .until(&format!("document.body.dataset.problem === '{first}' && document.querySelector('#history li')"))
        .await;
    let history = demo.get(&format!("/api/v1/problems/{first}/events")).await;
    let types: Vec<Value> = history
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| h["events"].as_array().unwrap().iter().map(|e| e["event"]["type"].clone()))
        .collect();
    let shown = browser.eval("[...document.querySelectorAll('#history li')].map(li => li.dataset.type)").await;
    assert_eq!(shown, json!(types), "the problem's history, event by event");
    let png = browser.screenshot(1440).await;
    save("dashboard-problem.png", &png);

    // Chinese labels on the toggle.
    browser.eval("document.getElementById('lang').click()").await;
    browser.until("document.documentElement.lang === 'zh-CN' && document.querySelector('[data-kpi=found] .label').textContent === '发现问题'").await;
}
