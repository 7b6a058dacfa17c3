//! Builds on a base image: its layers mounted (same registry) or fetched and uploaded (another registry, `base_auth`), its config inherited, an index resolved to the build's platform; and the whole story told with curl.

use super::*;

#[tokio::test]
async fn build_on_a_base_in_the_same_registry_mounts_its_layers_and_inherits_its_config() {
    let world = World::builder().proxy().start().await;
    let base = world.push(&BASE, "base/img:1", Format::Oci);
    let base_config = image::inspect_config(&world.registry, "base/img:1", None);
    assert_eq!(
        base_config["config"]["Cmd"],
        json!(["--from-base"]),
        "umoci wrote the base config this test expects: {base_config}"
    );
    make_source(&world.root().join("app"), "on-base");
    let (config, expected_config) = overrides_on_base();
    world.proxy().clear_log();
    let job = build_ok(
        &world,
        json!({"source": "app", "target": world.image("team/app:1"),
               "base": world.image("base/img:1"), "config": config, "format": "docker"}),
    )
    .await;
    let served = served(&world.registry, "team/app:1").await;
    assert_eq!(job.result()["digest"], served.digest.as_str());
    assert_eq!(served.manifest["mediaType"], DOCKER_MANIFEST);

    // layers: the base's, by reference, then the new one
    let base_layers = base.layer_digests();
    let layers = served.layer_digests();
    assert_eq!(layers.len(), base_layers.len() + 1, "{:?}", served.manifest);
    assert_eq!(layers[..base_layers.len()], base_layers[..]);
    for (l, b) in served.layers().iter().zip(base.layers()) {
        assert_eq!(l["size"], b["size"]);
        assert_eq!(
            l["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "base layers in the build's format"
        );
    }
    let result_layers: Vec<String> = job.result()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(result_layers, layers, "result.layers, oldest first");

    // pushed by mounting the base's blobs: no base layer uploaded
    for digest in &base_layers {
        // the query as sent: `mount=sha256%3A…&from=base%2Fimg` (or unescaped)
        let mounted = logged(&world, "POST", "/v2/team/app/blobs/uploads/?")
            .into_iter()
            .any(|m| {
                let query = m.path.replace("%3A", ":").replace("%2F", "/");
                m.status == 201
                    && query.contains(&format!("mount={digest}"))
                    && query.contains("from=base/img")
            });
        assert!(
            mounted,
            "base layer {digest} mounted from base/img: {}",
            world.proxy().log_text()
        );
        assert!(
            !uploads(&world).iter().any(|u| u.contains(&digest[7..])),
            "base layer {digest} uploaded: {:?}",
            uploads(&world)
        );
        assert!(world.registry.blob_file(digest).exists());
    }
    assert!(
        !logged(&world, "GET", "/blobs/")
            .iter()
            .any(|l| base_layers.iter().any(|d| l.path.contains(d.as_str()))),
        "a mounted base layer is not downloaded: {}",
        world.proxy().log_text()
    );
    // every blob was checked for before anything was sent
    for digest in served
        .layer_digests()
        .iter()
        .chain([&served.manifest["config"]["digest"]
            .as_str()
            .unwrap()
            .to_owned()])
    {
        assert!(
            !logged(&world, "HEAD", &format!("/v2/team/app/blobs/{digest}")).is_empty(),
            "HEAD {digest}: {}",
            world.proxy().log_text()
        );
    }
    let puts = logged(&world, "PUT", "/v2/team/app/manifests/");
    assert_eq!(puts.len(), 1, "{}", world.proxy().log_text());
    assert!(
        puts[0].path.ends_with("/manifests/1"),
        "PUT by tag: {:?}",
        puts[0]
    );

    // the config: the base's, overridden field by field
    let c = &served.config;
    assert_eq!(c["config"], expected_config, "{c}");
    assert_eq!(c["architecture"], base_config["architecture"]);
    assert_eq!(c["os"], base_config["os"]);
    let base_diff_ids = base_config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(
        served.diff_ids()[..base_diff_ids.len()],
        {
            base_diff_ids
                .iter()
                .map(|d| d.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }[..]
    );
    assert_eq!(served.diff_ids().len(), base_diff_ids.len() + 1);
    let base_history = base_config["history"].as_array().unwrap();
    let history = c["history"].as_array().unwrap();
    assert_eq!(history.len(), base_history.len() + 1, "{c}");
    assert_eq!(
        history[..base_history.len()],
        base_history[..],
        "history kept"
    );
    assert_ne!(history.last().unwrap()["empty_layer"], true);
    assert_eq!(history.last().unwrap()["created"], c["created"]);
    built_layer_items(&world.registry, "team/app", &served).await;
    assert_skopeo_reads(&world.registry, "team/app:1", &served);

    // the tree: the base's with the folder laid over it
    let expected = overlay(
        scan(&BASE_TREE.rootfs, &[]),
        expected_from_source(&world.root().join("app"), Recorded::default()),
    );
    let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, "team/app:1");
    assert_tree(&expected, &unpacked.rootfs, &[], "umoci's unpack");
    let pulled = world
        .pull_ok(&world.image("team/app:1"), "app-pulled")
        .await;
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull");
}

#[tokio::test]
async fn base_given_as_an_index_is_the_image_for_the_builds_platform() {
    let world = World::start().await;
    let index = fixtures::push_two_platform_index(&world.registry, "multi/base:1");
    make_source(&world.root().join("src"), "index");
    for (platform, arch, variant, tag) in [
        (Some("linux/arm64/v8"), "arm64", Some("v8"), "arm"),
        (None, upload::host_arch(), None, "host"),
    ] {
        let mut body = json!({"source": "src", "target": world.image(&format!("multi/app:{tag}")),
                              "base": world.image("multi/base:1")});
        if let Some(p) = platform {
            body["platform"] = json!(p);
        }
        let job = build_ok(&world, body).await;
        let repo_tag = format!("multi/app:{tag}");
        let served = served(&world.registry, &repo_tag).await;
        let base = image::inspect_pushed(
            &world.registry,
            &format!("multi/base@{}", index.entry_digest(arch)),
        );
        assert_eq!(
            served.layer_digests()[..1],
            base.layer_digests()[..],
            "the base layer is the {arch} image's"
        );
        assert_eq!(served.config["architecture"], arch, "{}", served.config);
        assert_eq!(served.config["os"], "linux");
        match variant {
            Some(v) => assert_eq!(served.config["variant"], v, "{}", served.config),
            None => assert!(served.config.get("variant").is_none()),
        }
        let platform_said = match variant {
            Some(v) => format!("linux/{arch}/{v}"),
            None => format!("linux/{arch}"),
        };
        assert_eq!(job.result()["platform"], platform_said.as_str(), "{job:?}");
        // the image pushed is one platform's image, not an index
        assert_eq!(served.manifest["mediaType"], OCI_MANIFEST);
        let pulled = world
            .pull(
                json!({"image": world.image(&repo_tag), "dest": format!("pulled-{tag}"),
                         "platform": platform_said}),
            )
            .await;
        pulled.expect_succeeded();
        assert_eq!(
            fs::read_to_string(pulled.dest().join("platform")).unwrap(),
            format!("linux/{arch}\n")
        );
        assert_eq!(
            fs::read_to_string(pulled.dest().join("label")).unwrap(),
            "index"
        );
    }
}

#[tokio::test]
async fn base_in_another_registry_is_fetched_with_base_auth_and_uploaded_with_auth() {
    let world = World::builder()
        .auth(RegistryAuth::token("alice", PASSWORD))
        .start()
        .await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = Registry::start(
        other_dir.path(),
        RegistryAuth::basic("bob", "bobs-password"),
    );
    let base_image = base_image("other-registry");
    // a Docker schema 2 base under an OCI build: its layers get OCI media types
    let base = base_image.push(&other, "base/img:1", Format::DockerV2s2);
    // The base's registry seen through a recording proxy: whose credentials reach it.
    let other_seen = common::proxy::FaultProxy::start(other.addr);
    let base_ref = format!("{}/base/img:1", other_seen.host());
    make_source(&world.root().join("src"), "cross");
    let alice = json!({"username": "alice", "password": PASSWORD});
    let bob = json!({"username": "bob", "password": "bobs-password"});
    let body = |tag: &str| {
        json!({"source": "src", "target": world.image(&format!("team/app:{tag}")),
               "base": base_ref, "compression": "zstd"})
    };

    // the target's credentials are no good for the base's registry, and the other way round
    let mut no_base_auth = body("a");
    no_base_auth["auth"] = alice.clone();
    build(&world, no_base_auth)
        .await
        .expect_failed("unauthorized");
    let sent: Vec<_> = other_seen
        .log()
        .into_iter()
        .filter_map(|l| l.authorization)
        .collect();
    assert!(
        sent.is_empty(),
        "the target's credentials never go to the base's registry: {sent:?}"
    );
    let mut no_auth = body("b");
    no_auth["base_auth"] = bob.clone();
    build(&world, no_auth).await.expect_failed("unauthorized");
    let mut swapped = body("c");
    swapped["auth"] = bob.clone();
    swapped["base_auth"] = alice.clone();
    build(&world, swapped).await.expect_failed("unauthorized");

    let mut both = body("1");
    both["auth"] = alice;
    both["base_auth"] = bob;
    let job = build_ok(&world, both).await;
    let served = served(&world.registry, "team/app:1").await;
    assert_eq!(job.result()["digest"], served.digest.as_str());
    assert_eq!(served.layer_digests()[..2], base.layer_digests()[..]);
    assert_eq!(served.manifest["mediaType"], OCI_MANIFEST);
    for layer in &served.layers()[..2] {
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "a base layer in the build's format"
        );
    }
    assert_eq!(
        served.layers()[2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_skopeo_reads(&world.registry, "team/app:1", &served);
    for digest in base.layer_digests() {
        assert!(
            world.registry.blob_file(&digest).exists(),
            "base layer {digest} uploaded into the target registry"
        );
    }
    let seen = format!(
        "{}\n{}",
        world.hoist.log_text(),
        world.get_json("/jobs").await.1
    );
    for secret in [PASSWORD, "bobs-password"] {
        assert!(
            !seen.contains(secret),
            "a password shows in the log or jobs"
        );
    }
    let expected = overlay(
        scan(&base_image.unpack_reference().rootfs, &[]),
        expected_from_source(&world.root().join("src"), Recorded::default()),
    );
    let pulled = world
        .pull(json!({"image": world.image("team/app:1"), "dest": "pulled",
                     "auth": {"username": "alice", "password": PASSWORD}}))
        .await;
    pulled.expect_succeeded();
    assert_tree(
        &expected,
        &pulled.dest(),
        &[],
        "hoist's pull of the zstd build",
    );
}

// ---------------------------------------------------------------------------------------
// The whole story, as a user would tell it
// ---------------------------------------------------------------------------------------

/// `curl -sS` with `args`; its answer as JSON.
fn curl(args: &[&str]) -> Value {
    let out = tools::run_stdout(
        tools::command("curl")
            .args(["-sS", "--fail-with-body", "--noproxy", "*"])
            .args(args),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("curl {args:?} said {out:?}: {e}"))
}

#[tokio::test]
async fn folder_built_with_curl_on_a_pulled_base_pulls_back_as_the_source_with_hoist_and_skopeo() {
    let world = World::start().await;
    world.push(&BASE, "base/img:1", Format::Oci);
    // the base, pulled by hoist: what the new layer goes on top of
    let base = world.pull_ok(&world.image("base/img:1"), "base").await;
    make_source(&world.root().join("site"), "curl");
    let body = json!({"source": "site", "target": world.image("site/app:1.0"),
                      "base": world.image("base/img:1"),
                      "config": {"entrypoint": ["/bin/app"], "env": ["MODE=curl"]}})
    .to_string();
    let accepted = curl(&[
        "-X",
        "POST",
        &world.url("/builds"),
        "-H",
        "content-type: application/json",
        "-d",
        &body,
    ]);
    let id = accepted["id"].as_str().expect("job id").to_owned();
    let mut job = accepted;
    for _ in 0..5 {
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break;
        }
        job = curl(&[&world.url(&format!("/jobs/{id}?wait=60"))]);
    }
    assert_eq!(job["status"], "succeeded", "{job}");
    let expected = overlay(
        scan(&base.dest(), &[]),
        expected_from_source(&world.root().join("site"), Recorded::default()),
    );
    let pulled = world
        .pull_ok(&world.image("site/app:1.0"), "site-pulled")
        .await;
    assert_eq!(pulled.result()["digest"], job["result"]["digest"]);
    assert_tree(&expected, &pulled.dest(), &[], "hoist's pull of the build");
    let (_keep, unpacked) = skopeo_umoci_unpack(&world.registry, "site/app:1.0");
    assert_tree(
        &expected,
        &unpacked.rootfs,
        &[],
        "skopeo + umoci's unpack of the build",
    );
    let config = image::inspect_config(&world.registry, "site/app:1.0", None);
    assert_eq!(config["config"]["Entrypoint"], json!(["/bin/app"]));
    assert_eq!(
        config["config"]["Env"],
        json!(["PATH=/usr/bin:/bin", "KEEP=base", "MODE=curl"])
    );
}
