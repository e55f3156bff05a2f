//! Starting an engine from a command template and always stopping it.
//!
//! The command runs under `sh -c` in a process group of its own, so that stopping it
//! reaches every process it started (vLLM's API server starts an engine core and workers),
//! with its output in a log file whose last lines explain a failed start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use simctl_live::client::EngineClient;

/// Time a stopped engine gets to exit after SIGTERM before it is killed (the engine script
/// of this repository's tools waits as long).
pub const STOP_GRACE: Duration = Duration::from_secs(30);
/// How often `/health` is polled while the engine starts.
const HEALTH_POLL: Duration = Duration::from_millis(500);
/// Log lines shown when the engine fails.
pub const LOG_TAIL_LINES: usize = 30;

/// Why an engine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The template is unusable.
    #[error("--launch: {0}")]
    Template(String),
    /// The command could not be run.
    #[error("cannot run the --launch command `{command}`: {error}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        error: std::io::Error,
    },
    /// It exited before it was healthy.
    #[error("the engine exited ({status}) before {url}/health answered; last lines of its log {}:\n{tail}", log.display())]
    Died {
        /// Exit status.
        status: String,
        /// Its URL.
        url: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// It did not become healthy in time.
    #[error("the engine did not answer {url}/health within {after:?} (stopped it; raise --launch-timeout if it is just slow to start); last lines of its log {}:\n{tail}", log.display())]
    Timeout {
        /// Its URL.
        url: String,
        /// The limit.
        after: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// The log file could not be created.
    #[error("cannot create the engine log `{}`: {error}", path.display())]
    Log {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// What to launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The command, with `{port}`, `{model}` and `{gpus}` to fill in.
    pub template: String,
    /// Served model name (`{model}`).
    pub model: String,
    /// GPUs to pin (`{gpus}`, and `CUDA_VISIBLE_DEVICES`); empty: leave the environment.
    pub gpus: Vec<u32>,
    /// Port (`{port}`).
    pub port: u16,
    /// Where the engine's output goes.
    pub log: PathBuf,
    /// CPUs the engine may run on (its GPU's NUMA-local ones, say); empty: all of them.
    pub cpus: Vec<u32>,
}

impl LaunchSpec {
    /// The command line with its placeholders filled in.
    pub fn command(&self) -> Result<String, LaunchError> {
        if !self.template.contains("{port}") {
            return Err(LaunchError::Template(format!(
                "the command `{}` has no `{{port}}`, so simctl cannot tell where the engine will listen; put `{{port}}` where it takes its port (e.g. `--port {{port}}`)",
                self.template
            )));
        }
        let gpus: Vec<String> = self.gpus.iter().map(u32::to_string).collect();
        Ok(self.template.replace("{port}", &self.port.to_string()).replace("{model}", &self.model).replace("{gpus}", &gpus.join(",")))
    }

    /// The engine's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A free TCP port on 127.0.0.1 (the kernel's choice; free when asked, so a race with
/// another program is possible but rare).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A running engine; stopped (its whole process group) when dropped.
#[derive(Debug)]
pub struct LaunchedEngine {
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

/// The last `n` lines of a file, or a note that it cannot be read.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            if lines.is_empty() {
                "  (the log is empty)".into()
            } else {
                lines[from..].iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
            }
        }
        Err(e) => format!("  (cannot read the log: {e})"),
    }
}

impl LaunchedEngine {
    /// Runs the command in a process group of its own, output to the log file.
    pub fn start(spec: &LaunchSpec) -> Result<LaunchedEngine, LaunchError> {
        let command = spec.command()?;
        let log = std::fs::File::create(&spec.log).map_err(|error| LaunchError::Log { path: spec.log.clone(), error })?;
        let err_log = log.try_clone().map_err(|error| LaunchError::Log { path: spec.log.clone(), error })?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&command).stdin(Stdio::null()).stdout(log).stderr(err_log);
        if !spec.gpus.is_empty() {
            let gpus: Vec<String> = spec.gpus.iter().map(u32::to_string).collect();
            cmd.env("CUDA_VISIBLE_DEVICES", gpus.join(","));
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own group: stopping it reaches its children, and a Ctrl-C in the terminal
            // reaches simctl only, which then stops the engine itself.
            cmd.process_group(0);
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // The engine does not inherit simctl's CPU pinning (`taskset -c 0 simctl ...`
            // keeps the client off the engine's cores): it may use every CPU, and where it
            // runs is for its command to say (CPU_CORE, numactl, ...).
            // SAFETY: between fork and exec only async-signal-safe calls are made here
            // (sched_setaffinity on a mask built on the stack).
            // SAFETY: the mask is built here, before the fork; zeroed is a valid empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for cpu in 0..libc::CPU_SETSIZE as usize {
                if spec.cpus.is_empty() || spec.cpus.contains(&(cpu as u32)) {
                    // SAFETY: cpu is below CPU_SETSIZE.
                    unsafe { libc::CPU_SET(cpu, &mut set) };
                }
            }
            unsafe {
                cmd.pre_exec(move || {
                    // Failure leaves the inherited mask: not worth refusing to start over.
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                    // If simctl dies without stopping it (killed, a second Ctrl-C), so does
                    // the engine's command.
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|error| LaunchError::Spawn { command: command.clone(), error })?;
        Ok(LaunchedEngine { child: Some(child), url: spec.url(), log: spec.log.clone() })
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The process id of the command (its process group id too).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the command has exited, and how.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Waits until `/health` answers, the command exits, or `timeout` passes (then it is
    /// stopped).
    pub async fn wait_healthy(&mut self, client: &EngineClient, timeout: Duration) -> Result<(), LaunchError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                self.stop();
                return Err(LaunchError::Died {
                    status,
                    url: self.url.clone(),
                    log: self.log.clone(),
                    tail: tail(&self.log, LOG_TAIL_LINES),
                });
            }
            if client.health().await.is_ok() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                self.stop();
                return Err(LaunchError::Timeout {
                    url: self.url.clone(),
                    after: timeout,
                    log: self.log.clone(),
                    tail: tail(&self.log, LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    }

    /// Stops the engine: SIGTERM to its process group, SIGKILL after [`STOP_GRACE`] if
    /// anything of it is left. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        #[cfg(unix)]
        {
            let pgid = child.id() as i32;
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // touched.
            let signal = |sig| unsafe { libc::kill(-pgid, sig) };
            if signal(libc::SIGTERM) == 0 {
                let deadline = Instant::now() + STOP_GRACE;
                loop {
                    let _ = child.try_wait();
                    // Signal 0 probes: ESRCH once no process of the group is left.
                    if signal(0) != 0 || Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if signal(0) == 0 {
                    signal(libc::SIGKILL);
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for LaunchedEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(template: &str, log: &Path) -> LaunchSpec {
        LaunchSpec { template: template.into(), model: "m".into(), gpus: vec![0, 2], port: 8123, log: log.to_path_buf(), cpus: Vec::new() }
    }

    #[test]
    fn placeholders_are_filled_and_a_missing_port_is_refused() {
        let s = spec("serve {model} --port {port} --gpus {gpus}", Path::new("/dev/null"));
        assert_eq!(s.command().unwrap(), "serve m --port 8123 --gpus 0,2");
        let e = spec("serve {model}", Path::new("/dev/null")).command().unwrap_err().to_string();
        assert!(e.contains("has no `{port}`"), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_engine_does_not_inherit_simctls_cpu_pinning() {
        let log = std::env::temp_dir().join(format!("simctl-launch-affinity-{}.log", std::process::id()));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Pin this thread (the spawning one) to CPU 0, as `taskset -c 0` would.
        // SAFETY: plain libc calls on a mask on the stack.
        unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut one);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
        }
        let mut e = LaunchedEngine::start(&spec("grep Cpus_allowed_list /proc/self/status # {port}", &log)).unwrap();
        while e.exited().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&log).unwrap();
        let want = if cpus == 1 { "0".to_string() } else { format!("0-{}", cpus - 1) };
        assert!(text.trim().ends_with(&want), "{text}");
        let _ = std::fs::remove_file(&log);
    }

    #[test]
    fn stopping_reaches_every_process_of_the_group() {
        let log = std::env::temp_dir().join(format!("simctl-launch-{}.log", std::process::id()));
        let mut e = LaunchedEngine::start(&spec("sleep 300 & sleep 300 & echo started {port}; wait", &log)).unwrap();
        let pgid = e.pid().unwrap() as i32;
        std::thread::sleep(Duration::from_millis(200));
        assert!(e.exited().is_none());
        e.stop();
        // SAFETY: signal 0 only checks whether the group still exists.
        assert_ne!(unsafe { libc::kill(-pgid, 0) }, 0, "no process of the group is left");
        assert!(tail(&log, 5).contains("started 8123"));
        let _ = std::fs::remove_file(&log);
    }
}
