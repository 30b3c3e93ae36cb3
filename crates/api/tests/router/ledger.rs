//! Reads: the public role sees published aggregates only; the ledger filters by region at every level,
//! status, sector, overdue and more, pages with a cursor that visits every row once, and exports CSV.

use crate::support::*;
use axum::http::{StatusCode, header};
use rectify_domain::Role;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Six problems across two prefectures, in every state, with the ids by letter:
/// A 520102/G01 phosphorus reported · B 520102/G02 baijiu rectifying · C 520103 coal mine closed ·
/// D 520201 phosphorus voided · E 520201 landfill rectifying and overdue · F 520102/G01 tailings pond
/// pending acceptance and listed for supervision.
struct Ledger {
    app: App,
    ids: BTreeMap<char, String>,
    /// A log position that includes everything above.
    position: u64,
}

impl Ledger {
    async fn build() -> Ledger {
        let app = App::start_with(|s| s.overdue_interval = std::time::Duration::from_millis(20)).await;
        let admin = app.admin.clone();
        let mut ids = BTreeMap::new();
        let report = |county: &str, grid: &str, sector: &str| {
            let mut body = report_body(county, grid);
            body["sector"] = json!(sector);
            body
        };
        for (letter, county, grid, sector) in [
            ('A', COUNTY, GRID, "phosphorus_chemical"),
            ('B', COUNTY, OTHER_GRID, "baijiu"),
            ('C', "520103", "520103-G01", "coal_mine"),
            ('D', FAR_COUNTY, FAR_GRID, "phosphorus_chemical"),
            ('E', FAR_COUNTY, FAR_GRID, "landfill"),
            ('F', COUNTY, GRID, "tailings_pond"),
        ] {
            let reply = app.post("/api/v1/problems", &admin, &report(county, grid, sector)).await;
            ids.insert(letter, reply.ok()["id"].as_str().unwrap().to_owned());
        }
        let deadline = action_body("deadline");
        let (submitter, acceptor) =
            (app.token(Role::Province, "520000", None), app.token(Role::Province, "520000", None));
        app.act(&admin, &ids[&'B'], "deadline", deadline.clone()).await;
        app.act(&admin, &ids[&'C'], "deadline", deadline.clone()).await;
        app.act(&submitter, &ids[&'C'], "submission", action_body("submission")).await;
        app.act(&acceptor, &ids[&'C'], "acceptance", action_body("acceptance")).await;
        app.act(&admin, &ids[&'D'], "void", action_body("void")).await;
        app.act(&admin, &ids[&'E'], "deadline", json!({"class": "time_limited", "due": days(-1)})).await;
        app.act(&admin, &ids[&'F'], "deadline", json!({"class": "immediate", "due": days(1)})).await;
        app.act(&admin, &ids[&'F'], "supervision", action_body("supervision")).await;
        app.act(&submitter, &ids[&'F'], "submission", action_body("submission")).await;
        // The deadline watcher marks E overdue in the background.
        app.eventually(&ids[&'E'], |p| p["overdue"] == true).await;
        let position = app.head().await;
        Ledger { app, ids, position }
    }

    /// The letters of the ledger rows `query` returns for `token` (one page, asserting there is no next).
    async fn letters(&self, token: &str, query: &str) -> String {
        let page = self.page(token, query).await;
        assert!(page["next"].is_null() || page["items"].as_array().unwrap().len() == 100, "{query}: {page}");
        self.to_letters(&page["items"])
    }

    async fn page(&self, token: &str, query: &str) -> Value {
        let sep = if query.is_empty() { "" } else { "&" };
        self.app.get(&format!("/api/v1/problems?wait_for={}{sep}{query}", self.position), token).await.ok()
    }

    fn letter(&self, id: &str) -> char {
        *self.ids.iter().find(|(_, v)| v.as_str() == id).unwrap_or_else(|| panic!("unknown id {id}")).0
    }

    fn to_letters(&self, items: &Value) -> String {
        let mut letters: Vec<char> =
            items.as_array().unwrap().iter().map(|i| self.letter(i["id"].as_str().unwrap())).collect();
        letters.sort();
        letters.into_iter().collect()
    }

    /// Walks every page of `query` with `limit`, checking each row comes exactly once.
    async fn walk(&self, query: &str, limit: usize) -> String {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let cursor = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
            let page = self.page(&self.app.admin, &format!("{query}&limit={limit}{cursor}")).await;
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= limit, "{query}: a page over the limit: {page}");
            seen.extend(items.iter().map(|i| self.letter(i["id"].as_str().unwrap())));
            match page["next"].as_str() {
                Some(next) => {
                    assert_eq!(items.len(), limit, "{query}: a short page with a next cursor");
                    after = Some(next.to_owned());
                }
                None => {
                    let unique: BTreeSet<char> = seen.iter().copied().collect();
                    assert_eq!(unique.len(), seen.len(), "{query}: a row came twice: {seen:?}");
                    return unique.into_iter().collect();
                }
            }
        }
        panic!("{query}: the cursor never ended: {seen:?}");
    }
}

#[tokio::test]
async fn ledger_filters() {
    let l = Ledger::build().await;
    let admin = l.app.admin.clone();
    for (query, expected) in [
        ("", "ABCDEF"),
        ("region=520000", "ABCDEF"),
        ("region=520100", "ABCF"),
        ("region=520102", "ABF"),
        ("region=520103", "C"),
        ("region=520200", "DE"),
        ("region=520201", "DE"),
        ("region=520300", ""),
        ("status=reported", "A"),
        ("status=rectifying", "BE"),
        ("status=pending_acceptance", "F"),
        ("status=closed", "C"),
        ("status=voided", "D"),
        ("sector=phosphorus_chemical", "AD"),
        ("sector=baijiu", "B"),
        ("sector=nature_reserve", ""),
        ("overdue=true", "E"),
        ("overdue=false", "ABCDF"),
        ("listed=true", "F"),
        ("grid=520102-G02", "B"),
        ("class=immediate", "F"),
        ("class=time_limited", "BCE"),
        ("region=520100&status=rectifying", "B"),
        ("region=520200&overdue=true", "E"),
        ("region=520100&overdue=true", ""),
        ("region=520102&sector=phosphorus_chemical&status=reported", "A"),
    ] {
        assert_eq!(l.letters(&admin, query).await, expected, "{query}");
    }
    // Date ranges: B and C are due in 30 days, E yesterday, F tomorrow; only C is signed off (now).
    let enc = |t: String| t.replace(':', "%3A").replace('+', "%2B");
    for (query, expected) in [
        (format!("due_to={}", enc(days(0))), "E"),
        (format!("due_from={}&due_to={}", enc(days(0)), enc(days(2))), "F"),
        (format!("due_from={}", enc(days(2))), "BC"),
        (format!("closed_from={}", enc(days(-1))), "C"),
        (format!("closed_to={}", enc(days(-1))), ""),
        (format!("reported_from={}", enc(days(1))), ""),
        (format!("reported_to={}", enc(days(1))), "ABCDEF"),
    ] {
        assert_eq!(l.letters(&admin, &query).await, expected, "{query}");
    }
    let page = l.page(&admin, "overdue=true").await;
    let e = &page["items"][0];
    assert_eq!(
        (e["overdue"].clone(), e["status"].clone(), e["prefecture"].clone()),
        (json!(true), json!("rectifying"), json!("520200"))
    );
    assert!(page["position"].as_u64().unwrap() >= l.position, "{page}");

    // What each role sees of it.
    let county = l.app.token(Role::CountyBureau, COUNTY, None);
    assert_eq!(l.letters(&county, "region=520102").await, "ABF");
    for query in ["region=520100", "region=520201"] {
        l.app.get(&format!("/api/v1/problems?{query}"), &county).await.problem(StatusCode::FORBIDDEN);
    }
    // Without a region, a county reads its own county.
    assert_eq!(l.letters(&county, "").await, "ABF");
    let city = l.app.token(Role::CityBureau, "520100", None);
    assert_eq!(l.letters(&city, "region=520100").await, "ABCF");
    let officer = l.app.token(Role::GridOfficer, COUNTY, Some(GRID));
    assert_eq!(l.letters(&officer, "region=520102").await, "ABF");
    let inspector = l.app.token(Role::Inspector, "520000", None);
    assert_eq!(l.letters(&inspector, "").await, "ABCDEF");
    let entity = l.app.token(Role::ResponsibleEntity, COUNTY, None);
    assert_eq!(l.letters(&entity, "").await, "");
    let entity_id = l.app.actor(&entity).id;
    let position =
        l.app.act(&admin, &l.ids[&'A'], "assignment", json!({"unit": "Kailin", "actor_id": entity_id})).await;
    let page = l.app.get(&format!("/api/v1/problems?wait_for={position}"), &entity).await.ok();
    assert_eq!(l.to_letters(&page["items"]), "A");
    l.app.stop().await;
}

#[tokio::test]
async fn ledger_pages_visit_every_row_once() {
    let l = Ledger::build().await;
    assert_eq!(l.walk("region=520000", 2).await, "ABCDEF");
    assert_eq!(l.walk("region=520000", 1).await, "ABCDEF");
    assert_eq!(l.walk("region=520000", 5).await, "ABCDEF");
    assert_eq!(l.walk("region=520000", 1000).await, "ABCDEF");
    assert_eq!(l.walk("overdue=false", 2).await, "ABCDF");
    assert_eq!(l.walk("region=520100", 2).await, "ABCF");
    assert_eq!(l.walk("region=520102&sector=tailings_pond", 2).await, "F");
    assert_eq!(l.walk("status=closed", 2).await, "C");
    // A cursor from elsewhere (or garbage) is no error: the page simply starts after it.
    let page = l.page(&l.app.admin, "after=zzz").await;
    assert_eq!(page["items"], json!([]), "{page}");
    l.app.stop().await;
}

#[tokio::test]
async fn ledger_as_csv() {
    let l = Ledger::build().await;
    let header_line = "id,status,version,region,grid,sector,severity,source,deadline_class,original_due,due,overdue,listed,reported_at,closed_at";
    let csv = |query: String| {
        let app = &l.app;
        async move { app.get(&format!("/api/v1/problems?format=csv&wait_for={}&{query}", l.position), &app.admin).await }
    };
    let reply = csv(String::new()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.content_type().starts_with("text/csv"), "{}", reply.content_type());
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], header_line);
    assert_eq!(lines.len(), 1 + 6, "{text}");
    let columns = header_line.split(',').count();
    let mut letters: Vec<char> = lines[1..]
        .iter()
        .map(|line| {
            assert_eq!(line.split(',').count(), columns, "{line}");
            l.letter(line.split(',').next().unwrap())
        })
        .collect();
    letters.sort();
    assert_eq!(letters.into_iter().collect::<String>(), "ABCDEF");
    let e_line = lines.iter().find(|line| line.starts_with(l.ids[&'E'].as_str())).unwrap();
    assert!(e_line.contains(",rectifying,") && e_line.contains(",landfill,") && e_line.contains(",true,"), "{e_line}");
    // Filters apply; an empty result is the header alone.
    let text = csv("status=closed".into()).await.text();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert_eq!(csv("sector=nature_reserve".into()).await.text(), format!("{header_line}\n"));
    // Pages: the next cursor travels in a header.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let reply = csv(format!("limit=2{after}")).await;
        let text = reply.text();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert!(rows.len() <= 2);
        seen.extend(rows.iter().map(|r| l.letter(r.split(',').next().unwrap())));
        match reply.headers.get("x-next-cursor") {
            Some(next) => after = format!("&after={}", next.to_str().unwrap()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen.into_iter().collect::<String>(), "ABCDEF");
    l.app.stop().await;
}

/// Bad query parameters are problem+json naming the parameter, like bad bodies.
#[tokio::test]
async fn bad_query_parameters_are_named() {
    let app = App::start().await;
    let p = app.report(COUNTY, GRID).await;
    for (query, field) in [
        ("status=bogus", "status"),
        ("sector=nuclear", "sector"),
        ("class=someday", "class"),
        ("overdue=maybe", "overdue"),
        ("listed=1", "listed"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("format=xml", "format"),
        ("region=999999", "region"),
        ("region=abc", "region"),
        ("wait_for=soon", "wait_for"),
    ] {
        let reply = app.get(&format!("/api/v1/problems?{query}"), &app.admin).await;
        reply.invalid(StatusCode::UNPROCESSABLE_ENTITY, field);
    }
    for (query, field) in [("region=5201", "region"), ("sector=nuclear", "sector"), ("wait_for=x", "wait_for")] {
        let reply = app.get(&format!("/api/v1/stats/summary?{query}"), &app.admin).await;
        reply.invalid(StatusCode::UNPROCESSABLE_ENTITY, field);
    }
    let reply = app.get(&format!("/api/v1/problems/{}?as_of=yesterday", p.id), &app.admin).await;
    reply.invalid(StatusCode::UNPROCESSABLE_ENTITY, "as_of");
    // Ids that cannot name a problem are 404, even undecodable ones.
    for id in ["%FF", "P520102-%FF", "not-an-id", "P520102-01NOSUCH", "I520102-abc"] {
        app.get(&format!("/api/v1/problems/{id}"), &app.admin).await.problem(StatusCode::NOT_FOUND);
        app.get(&format!("/api/v1/problems/{id}/events"), &app.admin).await.problem(StatusCode::NOT_FOUND);
    }
    let head = app.head().await;
    app.post("/api/v1/problems/%FF/void", &app.admin, &action_body("void")).await.problem(StatusCode::NOT_FOUND);
    app.get("/api/v1/regions/%FF", &app.admin).await.problem(StatusCode::NOT_FOUND);
    app.get("/api/v1/regions/999999", &app.admin).await.problem(StatusCode::NOT_FOUND);
    assert_eq!(app.head().await, head);
    app.stop().await;
}

#[tokio::test]
async fn the_public_sees_aggregates_only() {
    let app = App::start().await;
    let p = app.problem_for("void", COUNTY, GRID, "tok_nobody").await;
    let public = app.token(Role::Public, "520000", None);
    for query in [
        "",
        "region=520000",
        "region=520100",
        "region=520102",
        "sector=phosphorus_chemical",
        "region=520201&sector=baijiu",
    ] {
        let summary = app.get(&format!("/api/v1/stats/summary?wait_for={}&{query}", p.position), &public).await.ok();
        assert!(summary["found"].is_i64() || summary["found"].is_u64(), "{query}: {summary}");
    }
    let summary =
        app.get(&format!("/api/v1/stats/summary?region={COUNTY}&wait_for={}", p.position), &public).await.ok();
    assert_eq!(summary["found"], 1, "{summary}");
    assert_eq!(app.get("/api/v1/regions/520000", &public).await.status, StatusCode::OK);
    for path in [
        format!("/api/v1/problems/{}", p.id),
        format!("/api/v1/problems/{}/events", p.id),
        format!("/api/v1/problems/{}?as_of={}", p.id, days(0)),
        "/api/v1/problems".into(),
        format!("/api/v1/problems?region={COUNTY}"),
        "/api/v1/problems?format=csv".into(),
        // Probing an id that does not exist learns nothing either.
        "/api/v1/problems/P520102-01NOSUCHPROBLEM".into(),
    ] {
        let problem = app.get(&path, &public).await.problem(StatusCode::FORBIDDEN);
        assert!(!problem["detail"].as_str().unwrap().contains("Kailin"), "{problem}");
    }
    app.stop().await;
}

/// The ledger body and the problem's ETag agree with what the log says.
#[tokio::test]
async fn a_read_after_a_write_sees_it() {
    let app = App::start().await;
    let p = app.problem_for("acceptance", COUNTY, GRID, "tok_nobody").await;
    let reviewer = app.token(Role::CityBureau, "520100", None);
    let position = app.act(&reviewer, &p.id, "acceptance", action_body("acceptance")).await;
    // The ledger's default region is the province: a city asks for its own.
    let page =
        app.get(&format!("/api/v1/problems?region=520100&status=closed&wait_for={position}"), &reviewer).await.ok();
    assert_eq!(page["items"][0]["id"], p.id.as_str(), "{page}");
    let version = page["items"][0]["version"].as_u64().unwrap();
    let read = app.get(&format!("/api/v1/problems/{}", p.id), &reviewer).await;
    assert_eq!(read.headers[header::ETAG], format!("\"{version}\"").as_str());
    app.stop().await;
}
