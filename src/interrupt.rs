//! Ctrl-C and SIGTERM: the first one asks long work to stop and write what it has (marked
//! incomplete); a second one ends the process at once, removing the `.partial` files still
//! open so that nothing half-written is left behind.
//!
//! The handler is installed whatever the inherited disposition: a command started in the
//! background by a non-interactive shell inherits SIGINT ignored, and must still stop on it.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The signal that asked to stop (SIGINT or SIGTERM), 0 before any.
static SIGNAL: AtomicUsize = AtomicUsize::new(0);

/// `.partial` files being written, as C strings the handler can unlink (async-signal-safe).
const SLOTS: usize = 64;
static PARTIALS: [AtomicPtr<libc::c_char>; SLOTS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS];

#[cfg(unix)]
extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig as usize, Ordering::SeqCst);
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        for slot in &PARTIALS {
            let p = slot.load(Ordering::SeqCst);
            if !p.is_null() {
                // SAFETY: `p` is a leaked, NUL-terminated CString; unlink is async-signal-safe.
                unsafe { libc::unlink(p) };
            }
        }
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
}

/// Installs the handler for SIGINT and SIGTERM (idempotent).
pub fn install() {
    #[cfg(unix)]
    // SAFETY: the handler only touches atomics and calls unlink and _exit, all
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether Ctrl-C (or SIGTERM) came since the handler was installed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// A flag raised when Ctrl-C or SIGTERM comes (installs the handler), for work that takes
/// a stop flag rather than asking [`interrupted`].
pub fn stop_flag() -> std::sync::Arc<AtomicBool> {
    install();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !interrupted() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        s.store(true, Ordering::SeqCst);
    });
    stop
}

/// What stopped the work, for messages and summaries: `Ctrl-C` or `SIGTERM`.
pub fn signal_name() -> &'static str {
    match SIGNAL.load(Ordering::SeqCst) as libc::c_int {
        libc::SIGTERM => "SIGTERM",
        _ => "Ctrl-C",
    }
}

/// Remembers a `.partial` file being written, so that a second signal removes it.
pub fn track_partial(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return };
    // SAFETY: as in `untrack_partial`.
    if PARTIALS.iter().any(|s| {
        let p = s.load(Ordering::SeqCst);
        !p.is_null() && unsafe { std::ffi::CStr::from_ptr(p) } == c.as_c_str()
    }) {
        return;
    }
    let raw = c.into_raw();
    for slot in &PARTIALS {
        if slot.compare_exchange(std::ptr::null_mut(), raw, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
    // Every slot taken: the file is simply not tracked.
    // SAFETY: `raw` came from `into_raw` above and was not stored.
    drop(unsafe { CString::from_raw(raw) });
}

/// Forgets a `.partial` file (renamed to its final name, or removed).
pub fn untrack_partial(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let want = path.as_os_str().as_bytes();
    for slot in &PARTIALS {
        let p = slot.load(Ordering::SeqCst);
        // SAFETY: non-null slots hold leaked, NUL-terminated CStrings that are never freed
        // while stored.
        if !p.is_null() && unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes() == want {
            // The string stays leaked: the handler may be reading it right now.
            slot.store(std::ptr::null_mut(), Ordering::SeqCst);
            return;
        }
    }
}

/// Removes every `.partial` file still tracked (a command failed before finishing them).
pub fn remove_partials() {
    for slot in &PARTIALS {
        let p = slot.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: as in `untrack_partial`.
            let path = unsafe { std::ffi::CStr::from_ptr(p) };
            use std::os::unix::ffi::OsStrExt;
            let _ = std::fs::remove_file(std::ffi::OsStr::from_bytes(path.to_bytes()));
        }
    }
}
