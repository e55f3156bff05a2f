//! Hardware identity and topology: GPUs through NVML (loaded at run time, so a build or a
//! machine without the NVIDIA driver works and says so), CPUs and NUMA nodes from Linux's
//! `/proc` and `/sys`.

use std::path::Path;

use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::{Nvml, cuda_driver_version_major, cuda_driver_version_minor};
use serde::Serialize;
use simctl_engine::profile::{ProfileCpu, ProfileGpu};

/// Where Linux describes NUMA nodes.
const NODE_DIR: &str = "/sys/devices/system/node";
/// NVLink links a GPU may have (NVML's `NVML_NVLINK_MAX_LINKS` on Hopper).
const NVLINK_MAX_LINKS: u32 = 18;
/// Bits per word of NVML's CPU affinity masks (`unsigned long` on 64-bit Linux).
const MASK_BITS: usize = 64;

/// What NVML says, or why it could not.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuInventory {
    /// Every GPU NVML lists (empty without a driver).
    pub gpus: Vec<ProfileGpu>,
    /// Driver version.
    pub driver_version: Option<String>,
    /// CUDA version the driver supports.
    pub cuda_version: Option<String>,
    /// Why there are no GPUs, when there are none: one line for the user.
    pub note: Option<String>,
}

/// Reads every GPU through NVML. Without a driver (no `libnvidia-ml.so.1`, or it fails to
/// initialise) the inventory is empty and `note` says why; nothing panics.
pub fn gpus() -> GpuInventory {
    let nvml = match Nvml::init() {
        Ok(n) => n,
        Err(e) => {
            return GpuInventory {
                gpus: Vec::new(),
                driver_version: None,
                cuda_version: None,
                note: Some(format!("no NVIDIA GPU found: NVML is not available ({e})")),
            };
        }
    };
    let driver_version = nvml.sys_driver_version().ok();
    let cuda_version =
        nvml.sys_cuda_driver_version().ok().map(|v| format!("{}.{}", cuda_driver_version_major(v), cuda_driver_version_minor(v)));
    let count = nvml.device_count().unwrap_or(0);
    let mut gpus = Vec::new();
    // One NVML session for every device: shutting it down inside this loop (as the original
    // lab's probe did) would lose every GPU after the first.
    for i in 0..count {
        let Ok(d) = nvml.device_by_index(i) else { continue };
        let pci = d.pci_info().ok();
        let words = (std::thread::available_parallelism().map_or(1, |n| n.get()) * 4).div_ceil(MASK_BITS).max(1);
        // `c_ulong` is 32 bits on some targets, so the cast is not always the identity.
        #[allow(clippy::unnecessary_cast)]
        let affinity = d.cpu_affinity(words).ok().map(|m| cpu_list(&m.iter().map(|&w| w as u64).collect::<Vec<u64>>()));
        let pci_bus_id = pci.as_ref().map(|p| p.bus_id.clone());
        let mut nvlink_peers = Vec::new();
        for l in 0..NVLINK_MAX_LINKS {
            let link = d.link_wrapper_for(l);
            if link.is_active().unwrap_or(false)
                && let Ok(p) = link.remote_pci_info()
            {
                nvlink_peers.push(p.bus_id);
            }
        }
        nvlink_peers.sort();
        nvlink_peers.dedup();
        gpus.push(ProfileGpu {
            index: i,
            name: d.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into()),
            uuid: d.uuid().ok(),
            numa_node: d.numa_node_id().ok().or_else(|| pci_bus_id.as_deref().and_then(numa_of_pci)),
            pci_bus_id,
            memory_bytes: d.memory_info().ok().map(|m| m.total),
            max_sm_clock_mhz: d.max_clock_info(Clock::SM).ok(),
            max_memory_clock_mhz: d.max_clock_info(Clock::Memory).ok(),
            power_limit_w: d.enforced_power_limit().ok().map(|mw| f64::from(mw) / 1000.0),
            pcie_generation: d.max_pcie_link_gen().ok(),
            pcie_width: d.max_pcie_link_width().ok(),
            cpu_affinity: affinity,
            nvlink_peers,
        });
    }
    let note = gpus.is_empty().then(|| "no NVIDIA GPU found: NVML lists none".to_string());
    GpuInventory { gpus, driver_version, cuda_version, note }
}

/// NUMA node of a PCI device from sysfs (`-1` there means none).
fn numa_of_pci(bus_id: &str) -> Option<u32> {
    // NVML writes 8 hex digits of domain, sysfs 4.
    let id = bus_id.to_ascii_lowercase();
    let short = if id.len() > 12 { &id[id.len() - 12..] } else { id.as_str() };
    let text = std::fs::read_to_string(format!("/sys/bus/pci/devices/{short}/numa_node")).ok()?;
    text.trim().parse::<i64>().ok().and_then(|n| u32::try_from(n).ok())
}

/// A CPU mask as a Linux CPU list: `0-15,32-47`.
pub fn cpu_list(mask: &[u64]) -> String {
    let cpus: Vec<usize> = (0..mask.len() * 64).filter(|&c| mask[c / 64] >> (c % 64) & 1 == 1).collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// The load average (1, 5, 15 minutes) from `/proc/loadavg`; `None` where there is none.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_load_average(&text)
}

/// How many CPUs other work keeps busy, as a calibration or check sees it before its first
/// request: the least of [`BUSY_WINDOWS`] consecutive half-second readings of
/// [`busy_cpus`] (2.5 s). An engine that just served requests spins on for a while (vLLM's
/// processes poll their shared-memory queues for a second after the last step,
/// `busy_loop_s` in `vllm/distributed/device_communicators/shm_broadcast.py`); work that
/// goes on keeps every window busy.
pub fn background_busy_cpus() -> Option<f64> {
    (0..BUSY_WINDOWS).filter_map(|_| busy_cpus(std::time::Duration::from_millis(500))).reduce(f64::min)
}

/// Half-second readings [`background_busy_cpus`] takes.
pub const BUSY_WINDOWS: usize = 5;

/// How many CPUs were busy over `window` (`/proc/stat`: every CPU's time not idle or
/// waiting for I/O, as a number of CPUs): what the machine is doing now, where the 1-minute
/// load average still remembers a build that finished a minute ago. It blocks for
/// `window`. `None` where there is no `/proc/stat`.
pub fn busy_cpus(window: std::time::Duration) -> Option<f64> {
    let a = std::fs::read_to_string("/proc/stat").ok()?;
    std::thread::sleep(window);
    let b = std::fs::read_to_string("/proc/stat").ok()?;
    busy_between(&a, &b)
}

/// [`busy_cpus`] from two readings of `/proc/stat`.
pub fn busy_between(a: &str, b: &str) -> Option<f64> {
    // `cpu  user nice system idle iowait irq softirq steal ...` (USER_HZ ticks).
    let ticks = |t: &str| -> Option<(u64, u64)> {
        let line = t.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
        let total: u64 = v.iter().sum();
        Some((total, v.get(3)? + v.get(4)?))
    };
    let cpus = a.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count();
    let ((ta, ia), (tb, ib)) = (ticks(a)?, ticks(b)?);
    let total = tb.checked_sub(ta).filter(|&d| d > 0)?;
    let idle = ib.checked_sub(ia)?.min(total);
    Some((total - idle) as f64 / total as f64 * cpus.max(1) as f64)
}

/// The first three fields of `/proc/loadavg`.
pub fn parse_load_average(text: &str) -> Option<[f64; 3]> {
    let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0));
    Some([f.next()??, f.next()??, f.next()??])
}

/// Logical CPUs online on the machine (`/sys/devices/system/cpu/online`), not the ones this
/// process may run on: a calibration pinned to one core (`taskset -c 1`) still runs on a
/// machine whose load average counts every core.
pub fn cpus_online() -> Option<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| count_cpu_list(&t))
        .or_else(|| std::thread::available_parallelism().ok().and_then(|n| u32::try_from(n.get()).ok()))
}

/// The number of CPUs in a kernel CPU list (`0-3,8,10-11`).
pub fn count_cpu_list(text: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in text.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let a = part.parse::<u32>().ok()?;
                (a, a)
            }
        };
        n = n.checked_add(b.checked_sub(a)? + 1)?;
    }
    (n > 0).then_some(n)
}

/// The host CPU: model (`/proc/cpuinfo`), logical CPUs, NUMA nodes.
pub fn cpu() -> ProfileCpu {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = cpus_online().unwrap_or(1);
    ProfileCpu { model, cores, numa_nodes: (numa_nodes(Path::new(NODE_DIR)).len() as u32).max(1) }
}

/// One NUMA node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NumaNode {
    /// Node id.
    pub node: u32,
    /// Its CPUs, as a list (`0-15`).
    pub cpus: String,
    /// Its distances to every node, in node order (ACPI SLIT: 10 is local).
    pub distance: Vec<u32>,
}

/// NUMA nodes under `dir` (normally `/sys/devices/system/node`), sorted.
pub fn numa_nodes(dir: &Path) -> Vec<NumaNode> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut nodes: Vec<NumaNode> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let node: u32 = name.strip_prefix("node")?.parse().ok()?;
            let read = |f: &str| std::fs::read_to_string(e.path().join(f)).unwrap_or_default();
            let distance = read("distance").split_whitespace().filter_map(|d| d.parse().ok()).collect();
            Some(NumaNode { node, cpus: read("cpulist").trim().to_string(), distance })
        })
        .collect();
    nodes.sort_by_key(|n| n.node);
    nodes
}

/// The machine's topology, as `simctl topology` prints it (the original lab's
/// `topology.json` fields `gpu_numa`, `distance` and `timestamp`, and more).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Topology {
    /// When it was read (RFC 3339, UTC).
    pub timestamp: String,
    /// NUMA node of each GPU, by GPU index (`null`: unknown).
    pub gpu_numa: Vec<Option<u32>>,
    /// NUMA distance matrix, rows and columns in node order.
    pub distance: Vec<Vec<u32>>,
    /// The NUMA nodes.
    pub numa_nodes: Vec<NumaNode>,
    /// Every GPU: PCI bus id, CPU affinity, NVLink peers and the rest.
    pub gpus: Vec<ProfileGpu>,
    /// Driver version.
    pub driver_version: Option<String>,
    /// CUDA version.
    pub cuda_version: Option<String>,
    /// The host CPU.
    pub cpu: ProfileCpu,
    /// Why something is missing, one line.
    pub note: Option<String>,
}

/// Reads the topology of this machine.
pub fn topology(timestamp: String) -> Topology {
    topology_from(gpus(), Path::new(NODE_DIR), timestamp)
}

/// The topology from an inventory and a NUMA directory (tests give their own).
pub fn topology_from(inv: GpuInventory, node_dir: &Path, timestamp: String) -> Topology {
    let numa_nodes = numa_nodes(node_dir);
    let distance = numa_nodes.iter().map(|n| n.distance.clone()).collect();
    let mut note = inv.note.clone().map(|n| format!("{n}; showing the NUMA part only"));
    if numa_nodes.is_empty() {
        let n = format!("no NUMA information under {}", node_dir.display());
        note = Some(note.map_or(n.clone(), |x| format!("{x}; {n}")));
    }
    Topology {
        timestamp,
        gpu_numa: inv.gpus.iter().map(|g| g.numa_node).collect(),
        distance,
        numa_nodes,
        gpus: inv.gpus,
        driver_version: inv.driver_version,
        cuda_version: inv.cuda_version,
        cpu: cpu(),
        note,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_load_average_is_the_first_three_fields_of_proc_loadavg() {
        assert_eq!(super::parse_load_average("0.52 1.03 2.50 3/412 9123\n"), Some([0.52, 1.03, 2.5]));
        assert_eq!(super::parse_load_average("0.52 nan 2.50"), None);
        assert_eq!(super::parse_load_average(""), None);
    }

    use super::*;

    #[test]
    fn busy_cpus_are_the_share_of_ticks_not_idle_times_the_cpus() {
        let a = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\ncpu1 50 0 50 350 50 0 0 0 0 0\nintr 1\n";
        // 200 ticks later: 50 user + 50 system, 90 idle, 10 iowait -> half the time busy.
        let b = "cpu  150 0 150 790 110 0 0 0 0 0\ncpu0 75 0 75 395 55 0 0 0 0 0\ncpu1 75 0 75 395 55 0 0 0 0 0\n";
        assert_eq!(busy_between(a, b), Some(1.0), "half of two CPUs");
        assert_eq!(busy_between(a, a), None, "no time passed");
        assert_eq!(busy_between("intr 1", b), None);
    }

    #[test]
    fn cpu_lists_count_every_cpu_in_their_ranges() {
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("5"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
    }

    #[test]
    fn cpu_masks_read_as_lists() {
        assert_eq!(cpu_list(&[0b1111]), "0-3");
        assert_eq!(cpu_list(&[0b1011, 1]), "0-1,3,64");
        assert_eq!(cpu_list(&[0]), "");
    }

    #[test]
    fn numa_nodes_and_distances_come_from_sysfs() {
        let d = std::env::temp_dir().join(format!("simctl-numa-{}", std::process::id()));
        for (n, cpus, dist) in [(0, "0-7", "10 21"), (1, "8-15", "21 10")] {
            let p = d.join(format!("node{n}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("cpulist"), format!("{cpus}\n")).unwrap();
            std::fs::write(p.join("distance"), format!("{dist}\n")).unwrap();
        }
        std::fs::create_dir_all(d.join("power")).unwrap();
        let inv = GpuInventory {
            gpus: vec![ProfileGpu { index: 0, numa_node: Some(1), ..Default::default() }],
            driver_version: None,
            cuda_version: None,
            note: None,
        };
        let t = topology_from(inv, &d, "t".into());
        assert_eq!(t.distance, vec![vec![10, 21], vec![21, 10]]);
        assert_eq!((t.numa_nodes[1].cpus.as_str(), t.gpu_numa.clone()), ("8-15", vec![Some(1)]));
        assert_eq!(t.note, None);
        let none = topology_from(
            GpuInventory { gpus: vec![], driver_version: None, cuda_version: None, note: Some("no GPU".into()) },
            &d.join("nope"),
            "t".into(),
        );
        assert_eq!(
            none.note.unwrap(),
            format!("no GPU; showing the NUMA part only; no NUMA information under {}", d.join("nope").display())
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
