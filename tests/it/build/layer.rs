//! Builds without a base: one layer from a folder in each format and compression, reproducible with `source_date_epoch`, owners kept on request.

use super::*;

// ---------------------------------------------------------------------------------------
// Builds without a base: formats and compressions
// ---------------------------------------------------------------------------------------

/// Builds the source as one layer in `format`/`compression` and checks everything the
/// registry then serves: result, manifest, config, the layer's bytes and entries, and the
/// tree (pulled back by hoist; by skopeo + umoci for gzip). Returns the served image.
async fn build_and_check(
    world: &World,
    source: &str,
    repo_tag: &str,
    format: &str,
    compression: &str,
) -> Served {
    let label = format!("{format}-{compression}");
    let (config, expected_config) = full_config(&label);
    let target = world.image(repo_tag);
    let job = build_ok(
        world,
        json!({"source": source, "target": target, "format": format,
               "compression": compression, "config": config}),
    )
    .await;
    let result = job.result();
    let served = served(&world.registry, repo_tag).await;
    let (manifest_type, config_type, layer_type) = media_types(format, compression);

    // the result, per contract
    assert_eq!(result["target"], target.as_str(), "{job:?}");
    assert_eq!(result["platform"], host_platform().as_str(), "{job:?}");
    assert_eq!(result["digest"], served.digest.as_str(), "result.digest");
    let layers = result["layers"].as_array().expect("result.layers");
    assert_eq!(layers.len(), 1, "one folder, one layer: {job:?}");
    assert_eq!(layers[0]["digest"], served.layers()[0]["digest"]);
    assert_eq!(layers[0]["size"], served.layers()[0]["size"]);

    // the manifest
    assert_eq!(served.manifest["schemaVersion"], 2);
    assert_eq!(
        served.manifest["mediaType"],
        manifest_type,
        "{}",
        String::from_utf8_lossy(&served.raw)
    );
    assert_eq!(served.manifest["config"]["mediaType"], config_type);
    assert_eq!(served.layers().len(), 1);
    assert_eq!(served.layers()[0]["mediaType"], layer_type.as_str());

    // the config
    let c = &served.config;
    assert_eq!(c["architecture"], upload::host_arch(), "{c}");
    assert_eq!(c["os"], "linux", "{c}");
    assert_eq!(
        c["config"], expected_config,
        "runtime config from the request"
    );
    assert_eq!(c["rootfs"]["type"], "layers");
    assert_eq!(served.diff_ids().len(), 1);
    let history = c["history"].as_array().expect("history");
    assert_eq!(history.len(), 1, "one history entry for the one layer: {c}");
    assert_ne!(history[0]["empty_layer"], true);
    let created = c["created"].as_str().expect("created");
    assert!(
        (unix_time(created) - now()).abs() < 300,
        "created {created} is not about now"
    );
    assert_eq!(history[0]["created"], created);

    // the layer: sorted entries, no root entry, owners 0:0, modes and links as the source
    let items = built_layer_items(&world.registry, repo_of(repo_tag), &served).await;
    let names: Vec<&[u8]> = items.iter().map(|i| i.name.as_bytes()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "layer entries are sorted by name");
    assert!(
        !items
            .iter()
            .any(|i| matches!(i.name.as_str(), "." | "./" | "/" | "")),
        "the source folder itself is no entry"
    );
    assert!(
        items.iter().all(|i| i.owner == (0, 0)),
        "owners are 0:0 unless kept: {:?}",
        items
            .iter()
            .filter(|i| i.owner != (0, 0))
            .collect::<Vec<_>>()
    );
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i.name.trim_end_matches('/') == name)
            .unwrap_or_else(|| panic!("no entry {name} in the layer: {items:#?}"))
    };
    assert_eq!(item("bin/suid").mode, 0o4755);
    assert_eq!(item("tmp").kind, tar::EntryType::Directory);
    assert_eq!(item("tmp").mode, 0o1777);
    assert_eq!(item("links/long").kind, tar::EntryType::Symlink);
    assert_eq!(
        item("links/long").link.as_deref(),
        Some(format!("../{}", fixtures::LONG_NAME).as_str())
    );
    assert_eq!(item("data/second-name").kind, tar::EntryType::Link);
    assert_eq!(
        item("data/second-name").link.as_deref(),
        Some("data/original"),
        "the second name of a file is a hardlink to the first"
    );
    assert_eq!(
        item("data/future").mtime,
        FUTURE,
        "no clamp without an epoch"
    );
    assert_eq!(
        item("data/linked-out").kind,
        tar::EntryType::Regular,
        "a file's only name in the source is a regular file"
    );
    assert!(
        !items.iter().any(|i| i.name.starts_with("links/etc-dir/")),
        "a symlink to a folder is not followed"
    );
    assert!(
        !items.iter().any(|i| i.name == "run/socket"),
        "a socket has no place in a tar"
    );

    // the tree, pulled back by hoist (and by skopeo + umoci when umoci can read it)
    let expected = expected_from_source(&world.root().join(source), Recorded::default());
    let dest = format!("pulled-{}", repo_tag.replace(['/', ':'], "-"));
    let pulled = world.pull_ok(&target, &dest).await;
    assert_eq!(pulled.result()["digest"], served.digest.as_str());
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull of the build");
    if compression == "gzip" {
        let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, repo_tag);
        assert_tree(
            &expected,
            &unpacked.rootfs,
            &[],
            "umoci's unpack of the build",
        );
    }
    assert_skopeo_reads(&world.registry, repo_tag, &served);
    served
}

#[tokio::test]
async fn oci_gzip_build_pushes_the_folder_as_one_layer_with_config_and_manifest() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "oci-gzip");
    build_and_check(&world, "src", "built/app:oci-gzip", "oci", "gzip").await;
}

#[tokio::test]
async fn docker_gzip_build_pushes_a_docker_schema2_image() {
    let world = World::start().await;
    make_source(&world.root().join("src"), "docker-gzip");
    build_and_check(&world, "src", "built/app:docker-gzip", "docker", "gzip").await;
}

/// zstd: umoci cannot read it, so the tree is checked through hoist's pull, and a gzip
/// twin of the same folder (same tar, so the same diff_id) through umoci.
async fn zstd_build_with_gzip_twin(format: &str) {
    let world = World::start().await;
    make_source(&world.root().join("src"), &format!("{format}-zstd"));
    let zstd = build_and_check(
        &world,
        "src",
        &format!("built/app:{format}-zstd"),
        format,
        "zstd",
    )
    .await;
    let twin = build_and_check(
        &world,
        "src",
        &format!("twin/app:{format}-gzip"),
        format,
        "gzip",
    )
    .await;
    assert_eq!(
        zstd.diff_ids(),
        twin.diff_ids(),
        "the same folder is the same tar, whatever the compression"
    );
    assert_ne!(zstd.layer_digests(), twin.layer_digests());
}

#[tokio::test]
async fn oci_zstd_build_pushes_zstd_layers_that_hoist_pulls_back_as_the_source() {
    zstd_build_with_gzip_twin("oci").await;
}

// ---------------------------------------------------------------------------------------
// Reproducibility and owners
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn same_folder_with_source_date_epoch_builds_to_the_same_digest_twice() {
    let world = World::start().await;
    let source = world.root().join("repro");
    make_source(&source, "repro");
    let body = |tag: &str| {
        json!({"source": "repro", "target": world.image(&format!("repro/app:{tag}")),
               "source_date_epoch": SDE, "config": {"cmd": ["/bin/app"]}})
    };
    let first = build_ok(&world, body("one")).await;
    // what the epoch hides: mtimes newer than it
    set_mtime(&source.join("label"), now() as u64);
    set_mtime(&source.join("data/future"), FUTURE + 1);
    let second = build_ok(&world, body("two")).await;
    assert_eq!(
        first.result()["digest"],
        second.result()["digest"],
        "same folder, same epoch: same image\n{first:?}\n{second:?}"
    );
    assert_eq!(first.result()["layers"], second.result()["layers"]);
    let one = served(&world.registry, "repro/app:one").await;
    let two = served(&world.registry, "repro/app:two").await;
    assert_eq!(
        one.raw, two.raw,
        "the registry serves the same manifest bytes"
    );
    assert_eq!(one.digest, first.result()["digest"].as_str().unwrap());
    assert_eq!(one.config["created"], "2020-09-13T12:26:40Z");
    assert_eq!(
        unix_time(one.config["created"].as_str().unwrap()),
        SDE as i64
    );
    assert_eq!(one.config["history"][0]["created"], one.config["created"]);

    // every mtime at most the epoch, older ones kept
    let items = built_layer_items(&world.registry, "repro/app", &one).await;
    assert!(
        items.iter().all(|i| i.mtime <= SDE),
        "mtimes clamped: {:?}",
        items.iter().filter(|i| i.mtime > SDE).collect::<Vec<_>>()
    );
    let mtime = |name: &str| items.iter().find(|i| i.name == name).unwrap().mtime;
    assert_eq!(mtime("data/old"), OLD);
    assert_eq!(mtime("data/future"), SDE);
    let pulled = world
        .pull_ok(&world.image("repro/app:one"), "repro-pulled")
        .await;
    assert_tree(
        &expected_from_source(
            &source,
            Recorded {
                source_date_epoch: Some(SDE),
                ..Recorded::default()
            },
        ),
        &pulled.dest(),
        &[],
        "the reproducible build pulled back",
    );

    // another epoch is another image; no epoch keeps the newer mtimes
    let other = build_ok(
        &world,
        json!({"source": "repro", "target": world.image("repro/app:three"),
               "source_date_epoch": SDE + 1, "config": {"cmd": ["/bin/app"]}}),
    )
    .await;
    assert_ne!(other.result()["digest"], first.result()["digest"]);
    let unclamped = build_ok(
        &world,
        json!({"source": "repro", "target": world.image("repro/app:four")}),
    )
    .await;
    assert_ne!(
        unclamped.result()["layers"][0]["digest"],
        first.result()["layers"][0]["digest"]
    );
}

#[tokio::test]
async fn keep_owners_records_the_files_owners_in_the_layer() {
    let world = World::start().await;
    let source = world.root().join("owned");
    make_source(&source, "owners");
    let job = build_ok(
        &world,
        json!({"source": source.display().to_string(),
               "target": world.image("owners/app:1"), "keep_owners": true}),
    )
    .await;
    assert_eq!(job.0["request"]["keep_owners"], true);
    let served = served(&world.registry, "owners/app:1").await;
    let items = built_layer_items(&world.registry, "owners/app", &served).await;
    let owner = |name: &str| {
        items
            .iter()
            .find(|i| i.name.trim_end_matches('/') == name)
            .unwrap()
            .owner
    };
    assert_eq!(owner("etc/app.conf"), (1000, 1000));
    assert_eq!(owner("etc/secret"), (1000, 50));
    assert_eq!(owner("home/user"), (1000, 1000));
    assert_eq!(owner("links/relative"), (1000, 1000));
    assert_eq!(owner("srv/group"), (0, 50));
    assert_eq!(owner("etc/big-ids"), (3_000_000, 3_000_001));
    assert_eq!(owner("bin/app"), (0, 0));
    let expected = expected_from_source(
        &source,
        Recorded {
            keep_owners: true,
            ..Recorded::default()
        },
    );
    let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, "owners/app:1");
    assert_tree(&expected, &unpacked.rootfs, &[], "umoci's unpack");
    let pulled = world
        .pull_ok(&world.image("owners/app:1"), "owners-pulled")
        .await;
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull");
}
