//! Bakes the commit and the build time into the binary (`GIT_SHA` / `BUILD_TIME` override them at run time).

use std::process::Command;

fn main() {
    // HEAD and the current branch's ref, where git really keeps them: in a linked worktree
    // `.git` is a file, a watched path that does not exist makes cargo rerun this script (and so
    // rebuild the crate) on every build, and watching all of `refs/heads` rebuilt it whenever any
    // branch moved (another worktree's commits): minutes of release build on 2 cores.
    for path in watched_git_paths() {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_VERSION");
    println!("cargo:rerun-if-env-changed=GIT_SHA");
    // Heroku exposes the commit as SOURCE_VERSION at build time; a git checkout knows it itself.
    let sha = std::env::var("GIT_SHA")
        .or_else(|_| std::env::var("SOURCE_VERSION"))
        .ok()
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AUTORISEN_BUILD_GIT_SHA={sha}");
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    println!("cargo:rustc-env=AUTORISEN_BUILD_TIME={}", rfc3339(secs));
}

/// HEAD and the file holding the current branch's commit (its loose ref, else `packed-refs`);
/// `.git/HEAD` and `.git/refs/heads` when git cannot say.
fn watched_git_paths() -> Vec<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) else {
        return vec![".git/HEAD".into(), ".git/refs/heads".into()];
    };
    let mut paths = vec![head];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = git(&["rev-parse", "--git-path", &branch]);
        match loose.filter(|p| std::path::Path::new(p).exists()) {
            Some(loose) => paths.push(loose),
            None => paths.extend(git(&["rev-parse", "--git-path", "packed-refs"])),
        }
    }
    paths
}

/// Formats Unix seconds as RFC 3339 UTC without pulling a date crate into the build script.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
