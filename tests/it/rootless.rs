//! A daemon that is not root (`nobody`): owners recorded as `umoci unpack --rootless`
//! records them (`user.rootlesscontainers`), modes, links, times and user xattrs kept, and
//! what it could not make (a device node, owners of a symlink and a FIFO, a `trusted.`
//! xattr) listed in `result.warnings` and counted in the job's log line. The tree is
//! compared, entry by entry and xattrs included, with umoci's rootless unpack of the same
//! image, both run as `nobody`.

use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::rootless::{RootlessHoist, umoci_unpack};
use crate::common::{Format, Image, ImageBuilder, Registry, RegistryAuth, assert_same_tree};

/// Everything a rootless unpack must record or report.
static OWNERS: LazyLock<Image> = LazyLock::new(|| {
    ImageBuilder::new()
        .layer(|r| {
            r.file("etc/owned", "mine\n")
                .chown("etc/owned", 1000, 1001)
                .xattr("etc/owned", "user.note", b"kept")
                .file("etc/group-only", "g\n")
                .chown("etc/group-only", 0, 5)
                .file("etc/privileged", "p\n")
                .xattr("etc/privileged", "trusted.hoist", b"root only")
                .dir("srv/data")
                .chown("srv/data", 4, 0)
                .chmod("srv/data", 0o2750)
                .file("bin/suid", "setuid\n")
                .chmod("bin/suid", 0o4755)
                .hardlink("bin/suid-again", "bin/suid")
                .symlink("srv/data/link", "../../etc/owned")
                .chown("srv/data/link", 7, 8)
                .symlink("etc/root-link", "owned")
                .fifo("run/fifo")
                .chown("run/fifo", 3, 0)
                .dir("dev");
            let status = Command::new("mknod")
                .arg(r.path("dev/null"))
                .args(["c", "1", "3"])
                .status()
                .expect("mknod");
            assert!(status.success(), "mknod dev/null");
        })
        .build()
});

#[tokio::test]
async fn rootless_pull_records_owners_like_umoci_and_lists_what_it_could_not_make() {
    let dir = tempfile::Builder::new()
        .prefix("hoist-test-rootless-")
        .tempdir()
        .unwrap();
    let registry = Registry::start(&dir.path().join("registry"), RegistryAuth::Open);
    OWNERS.push(&registry, "rootless/owners:1", Format::Oci);
    let reference = umoci_unpack(&OWNERS, &dir.path().join("ref"));
    let hoist = RootlessHoist::start(&dir.path().join("hoist"));

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let image = format!("{}/rootless/owners:1", registry.host());
    let resp = http
        .post(hoist.url("/pulls"))
        .json(&json!({"image": image, "dest": "owners"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = Instant::now();
    let job = loop {
        let job: Value = http
            .get(hoist.url(&format!("/jobs/{id}?wait=30")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break job;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{job}");
    };
    assert_eq!(job["status"], "succeeded", "{job:#}");

    let dest = hoist.dirs.roots[0].join("owners");
    assert_same_tree(&reference, &dest);

    let warnings = &job["result"]["warnings"];
    assert_eq!(warnings["count"], 4, "{job:#}");
    let first: Vec<&str> = warnings["first"]
        .as_array()
        .unwrap_or_else(|| panic!("no result.warnings.first: {job:#}"))
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for (what, name) in [
        ("device node", "\"dev/null\""),
        ("trusted.hoist", "\"etc/privileged\""),
        ("owner", "\"srv/data/link\""),
        ("owner", "\"run/fifo\""),
    ] {
        assert!(
            first.iter().any(|w| w.contains(what) && w.contains(name)),
            "no warning about {what} of {name}: {first:#?}"
        );
    }
    let log = hoist.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(id.as_str()) && l.contains("warnings=4")),
        "the job's log line counts the warnings:\n{log}"
    );
}
