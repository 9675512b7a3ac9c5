//! A real Prometheus (Debian's) scrapes `islander run --metrics`:
//! promtool finds nothing wrong with the page, and every PromQL expression
//! of the Grafana dashboards returns at least one series while an isle runs.

use std::time::{Duration, Instant};

use islander_tests::metrics::{
    dashboard_files, dashboard_queries, expect_line, free_addr, helpers_rootfs, load_dashboard,
    poll, promtool_check_metrics, substitute, Prometheus, Scrape, MIB,
};
use islander_tests::{Islander, OutputExt};

/// Prometheus needs a few 1 s scrapes before a 10 s rate() has two points.
const WARM_UP: Duration = Duration::from_secs(90);
/// Per expression, once the warm-up query answered.
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// The isle does a little of everything once, so that every family has a
/// series (block IO per device, network, syscalls), then holds.
const WORKLOAD: &str = "/helpers/writer /w.bin 2 2\n\
                        /helpers/netsend 1048576\n\
                        /helpers/getpid_n 1000\n\
                        echo workload-done\n\
                        read x";

#[test]
fn prometheus_scrapes_and_every_dashboard_query_has_data() {
    let isl = Islander::new("metrics-prometheus");
    let addr = free_addr();
    let rootfs = helpers_rootfs();
    let mut isle = isl.spawn(
        &[
            "--rootfs",
            rootfs.to_str().expect("UTF-8 path"),
            "--metrics",
            &addr,
            "--name",
            "prom-e2e",
        ],
        "",
        WORKLOAD,
    );
    expect_line(&mut isle, "workload-done", Duration::from_secs(120));
    let short = isle.short_id().to_string();

    let page = poll(Duration::from_secs(30), "a scrape listing the isle", || {
        let s = Scrape::fetch(&addr)?;
        s.sum("islander_isle_cpu_usage_seconds_total", &[("isle", &short)])
            .map(|_| s.clone())
            .ok_or_else(|| format!("isle {short} not in:\n{}", s.text))
    });
    let lint = promtool_check_metrics(&page.text);
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics found problems: {}\n--- the page ---\n{}",
        lint.describe(),
        page.text
    );

    let prom = Prometheus::start(&[&addr]);
    let warm = format!("rate(islander_isle_cpu_usage_seconds_total{{isle=\"{short}\"}}[10s])");
    poll(WARM_UP, "Prometheus to scrape islander twice", || {
        let up = prom.query("up{job=\"islander\"} == 1")?;
        if up.is_empty() {
            return Err(format!(
                "islander's target is not up; targets: {:?}",
                targets(&prom)
            ));
        }
        match prom.query(&warm)? {
            list if !list.is_empty() => Ok(()),
            _ => Err(format!("{warm} has no series yet")),
        }
    });

    let mut failures = Vec::new();
    let mut checked = 0;
    for file in dashboard_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for q in dashboard_queries(&load_dashboard(&file)) {
            let expr = substitute(&q.expr, &short);
            checked += 1;
            if let Err(why) = has_series(&prom, &expr) {
                failures.push(format!("{name} {}: {expr}\n    {why}", q.origin));
            }
        }
    }
    assert!(checked > 20, "only {checked} dashboard queries found");
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries return no series:\n  {}\n--- Prometheus log ---\n{}",
        failures.len(),
        failures.join("\n  "),
        prom.log()
    );

    // The series are the isle's own: its name reaches Prometheus too.
    let named = prom
        .query(&format!(
            "islander_isle_memory_usage_bytes{{isle=\"{short}\",name=\"prom-e2e\"}}"
        ))
        .expect("query by name");
    assert_eq!(named.len(), 1, "{named:?}");
    let written = prom
        .query(&format!(
            "sum(islander_isle_block_write_bytes_total{{isle=\"{short}\"}})"
        ))
        .expect("query block writes");
    let value: f64 = written[0]["value"][1]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0.0);
    assert!(
        value >= (4 * MIB) as f64 * 0.95,
        "the isle wrote 4 MiB, Prometheus has {value}"
    );

    let id = isle.id().to_string();
    drop(prom);
    isle.finish().assert_success("the isle");
    isl.assert_no_leftovers(&id);
}

/// Polls `expr` until it returns a series (rate windows may need another
/// scrape), or says what it returned.
fn has_series(prom: &Prometheus, expr: &str) -> Result<usize, String> {
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        let last = match prom.query(expr) {
            Ok(list) if !list.is_empty() => return Ok(list.len()),
            Ok(_) => "no series".to_string(),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn targets(prom: &Prometheus) -> String {
    islander_tests::metrics::http_get(&prom.addr, "/api/v1/targets")
        .map(|(_, body)| body)
        .unwrap_or_else(|e| e)
}
