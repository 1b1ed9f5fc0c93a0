//! `--driver process`: what supervising costs. Start-to-RUNNING against
//! the process's own readiness (the same script spawned bare, waiting for
//! its first line), and the driver's own memory and CPU per supervised
//! process with 1,000 of them (200 in a quick run) reporting nothing and
//! observed once a second, as heartbeats do.

use crate::prelude::*;
use connector_control::agent::driver::{Driver, Start};
use connector_control::agent::{Processes, process::spec};

const SCRIPT: &str = "echo '{\"message\": \"ready\"}'\nexec sleep 600\n";

fn start(id: &str) -> Start {
    Start {
        connector_id: id.to_owned(),
        generation: 1,
        pull_back_time: None,
        checkpoint_time: None,
        skip_to_earliest: false,
    }
}

/// This process's resident memory, in KiB.
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// CPU time this process used so far (user and system).
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    time(usage.user_time()) + time(usage.system_time())
}

/// The same script, bare: spawned and read until its first line.
async fn bare(script: &std::path::Path) -> anyhow::Result<Duration> {
    use tokio::io::AsyncBufReadExt;
    let started = Instant::now();
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg(script)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await?;
    let took = started.elapsed();
    child.kill().await?;
    Ok(took)
}

pub(crate) async fn processes(plan: &Plan) -> anyhow::Result<Vec<Line>> {
    connector_control::connections::raise_open_file_limit();
    let dir = std::env::temp_dir().join(format!("cc-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("connector.sh");
    std::fs::write(&script, SCRIPT)?;
    let supervised = if plan.quick { 200 } else { 1_000 };
    let file: String = (0..supervised)
        .map(|i| {
            format!(
                "[connectors.c{i}]\ncommand = [\"/bin/sh\", {:?}]\n",
                script.display().to_string()
            )
        })
        .collect();
    let driver = Processes::new(spec::parse(&file)?);

    // Start overhead: alternated with the bare spawn, one at a time.
    let starts = if plan.quick { 30 } else { 100 };
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    for i in 0..starts {
        baseline.push(bare(&script).await?);
        let id = format!("c{i}");
        let started = Instant::now();
        driver
            .start(start(&id))
            .await
            .map_err(|refusal| anyhow::anyhow!("{refusal:?}"))?;
        ours.push(started.elapsed());
        driver
            .pause(&id, 2)
            .await
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;
    }
    let (ours, baseline) = (
        Stats::of(ours, Duration::from_secs(1)),
        Stats::of(baseline, Duration::from_secs(1)),
    );
    let extra = ms(ours.p50) - ms(baseline.p50);
    let overhead = Line {
        scenario: "Process driver: start to RUNNING (ready at its first report)".to_owned(),
        ours: format!("{:.2} / {:.2} ms", ms(ours.p50), ms(ours.p99)),
        baseline: format!(
            "bare spawn to first line: {:.2} / {:.2} ms",
            ms(baseline.p50),
            ms(baseline.p99)
        ),
        ratio: format!("p50 {extra:+.2} ms"),
        target: "p50 <= bare + 5 ms".to_owned(),
        met: extra <= 5.0,
    };
    report(&overhead);

    // Memory and CPU of the driver itself with `supervised` processes.
    let before = rss_kib()?;
    for i in 0..supervised {
        driver
            .start(start(&format!("c{i}")))
            .await
            .map_err(|refusal| anyhow::anyhow!("{refusal:?}"))?;
    }
    let window = if plan.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    let cpu_before = cpu_time();
    let watched = Instant::now();
    while watched.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let running = driver.observe().len();
        anyhow::ensure!(running == supervised, "{running} of {supervised} observed");
    }
    let cpu = cpu_time() - cpu_before;
    let after = rss_kib()?;
    let per_process_kib = after.saturating_sub(before) as f64 / supervised as f64;
    let per_process_cpu =
        cpu.as_secs_f64() / watched.elapsed().as_secs_f64() / supervised as f64 * 100.0;
    let footprint = Line {
        scenario: format!(
            "Process driver: its own cost per supervised process, {supervised} processes"
        ),
        ours: format!("{per_process_kib:.1} KiB, {per_process_cpu:.4}% of a core"),
        baseline: "none (absolute target)".to_owned(),
        ratio: format!(
            "{:.1} MiB, {:.2}% in all",
            (after.saturating_sub(before)) as f64 / 1024.0,
            per_process_cpu * supervised as f64
        ),
        target: "<= 1 MiB and <= 0.1% of a core each".to_owned(),
        met: per_process_kib <= 1024.0 && per_process_cpu <= 0.1,
    };
    report(&footprint);
    driver.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![overhead, footprint])
}
