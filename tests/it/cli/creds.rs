//! Credentials on the command line: the API token from the flag or the environment, and
//! registry credentials (`--creds`, a creds file with a JSON key) that reach the registry
//! and show nowhere else (not in the job, the log, argv or the data folder).

use super::*;

/// With HOIST_API_TOKEN on the daemon: no token or a wrong one fails with the 401's
/// detail; `--token` and the `HOIST_API_TOKEN` variable work, following a job included.
#[tokio::test]
async fn api_token_comes_from_the_flag_or_the_environment() {
    let world = World::builder().api_token(TOKEN).start().await;
    world.push(&SMALL, "cli/small:1", Format::Oci);
    let mut cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let resp = world
        .anonymous(reqwest::Method::GET, "/jobs")
        .send()
        .await
        .unwrap();
    let problem = common::expect_problem(resp, 401, Some("unauthorized")).await;
    let detail = problem["detail"].as_str().unwrap().to_owned();
    let ran = cli.run(&["jobs"]).fails();
    assert_eq!(ran.error(), format!("hoist: {detail}"));
    cli.token = Some("wrong".into());
    let ran = cli.run(&["jobs"]).fails();
    assert_eq!(ran.error(), format!("hoist: {detail}"));
    let ran = cli
        .run(&["pull", &world.image("cli/small:1"), "denied"])
        .fails();
    assert_eq!(ran.error(), format!("hoist: {detail}"));

    cli.token = Some(TOKEN.into());
    cli.ok(&["pull", &world.image("cli/small:1"), "allowed"]);
    assert_same_tree(&SMALL_REF.rootfs, &world.root().join("allowed"));
    let mut by_env = Cli::new(&world.hoist.base_url(), Via::Flag);
    by_env.env.push(("HOIST_API_TOKEN".into(), TOKEN.into()));
    assert_eq!(by_env.ok(&["jobs", "-q"]).lines().len(), 1);
    let id = by_env
        .ok(&["pull", &world.image("cli/small:1"), "detached", "--detach"])
        .stdout
        .trim()
        .to_owned();
    by_env.ok(&["job", &id, "--follow"]);
}

/// Every file under `dir`, read as bytes, that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let bytes = std::fs::read(e.path()).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

/// Asserts that `secret` shows nowhere the daemon writes or shows: `hoist jobs`,
/// `hoist job ID`, what the pull printed, the daemon's log, the data dir (the SQLite
/// database and its WAL) and the cache.
fn assert_secret_nowhere(world: &World, cli: &Cli, id: &str, pulled: &Ran, secret: &str) {
    for ran in [
        cli.ok(&["jobs"]),
        cli.ok(&["job", id]),
        cli.ok(&["job", id, "-o", "json"]),
        cli.ok(&["job", id, "--follow"]),
    ] {
        assert!(
            !ran.stdout.contains(secret) && !ran.stderr.contains(secret),
            "{} shows the password",
            ran.what
        );
    }
    assert!(
        !pulled.stdout.contains(secret) && !pulled.stderr.contains(secret),
        "the pull's own output shows the password"
    );
    assert!(
        !world.hoist.log_text().contains(secret),
        "the daemon's log has the password"
    );
    for dir in [&world.hoist.data_dir, &world.hoist.cache_dir] {
        let found = files_containing(dir, secret);
        assert!(found.is_empty(), "the password is in {found:?}");
    }
    assert!(
        world.hoist.data_dir.join("hoist.db").is_file(),
        "the database was searched too"
    );
}

/// `--creds user:pass` against a registry with htpasswd auth: the pull works, and the
/// password never shows.
#[tokio::test]
async fn creds_reach_a_basic_auth_registry_and_show_nowhere() {
    let world = World::builder()
        .auth(RegistryAuth::basic("alice", PASSWORD))
        .start()
        .await;
    world.push(&SMALL, "cli/private:1", Format::Oci);
    let image = world.image("cli/private:1");
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let creds = format!("alice:{PASSWORD}");
    let pulled = cli.ok(&["pull", &image, "private", "--creds", &creds]);
    assert_same_tree(&SMALL_REF.rootfs, &world.root().join("private"));
    let id = cli.ok(&["jobs", "-q"]).lines()[0]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_secret_nowhere(&world, &cli, &id, &pulled, PASSWORD);

    let ran = cli.run(&["pull", &image, "anonymous"]).fails();
    assert!(ran.error().contains("unauthorized"), "{}", ran.stderr);
    let ran = cli
        .run(&["pull", &image, "wrong", "--creds", "alice:not-the-password"])
        .fails();
    assert!(ran.error().contains("unauthorized"), "{}", ran.stderr);
}

/// A GCR-style service-account key, as a JSON file: multi-line, with a trailing newline.
fn json_key() -> String {
    let key = json!({
        "type": "service_account",
        "project_id": "hoist-test",
        "private_key_id": "0123456789abcdef",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
        "client_email": "puller@hoist-test.iam.gserviceaccount.com",
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token"
    });
    format!("{}\n", serde_json::to_string_pretty(&key).unwrap())
}

/// `--creds-file KEY.json`: the registry is asked as user `_json_key` with the key's JSON
/// (as in the file, without the trailing newline) as password, as GCR wants; the key
/// shows nowhere.
///
/// The registry uses token auth (as GCR does): the test token server compares the whole
/// password and records the user. An htpasswd registry would not do: `htpasswd` refuses
/// passwords over 256 bytes and bcrypt looks at the first 72 only.
#[tokio::test]
async fn creds_file_with_a_json_key_is_sent_as_user_json_key() {
    let key = json_key();
    let password = key.trim().to_owned();
    let world = World::builder()
        .auth(RegistryAuth::token("_json_key", &password))
        .start()
        .await;
    world.push(&SMALL, "cli/gcr:1", Format::Oci);
    let file = world.dir().join("key.json");
    std::fs::write(&file, &key).unwrap();
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let pulled = cli.ok(&[
        "pull",
        &world.image("cli/gcr:1"),
        "gcr",
        "--creds-file",
        file.to_str().unwrap(),
    ]);
    assert_same_tree(&SMALL_REF.rootfs, &world.root().join("gcr"));
    let asked = world.registry.token_server.as_ref().unwrap().requests();
    assert!(
        asked
            .iter()
            .any(|r| r.granted && r.user.as_deref() == Some("_json_key")),
        "no token granted to user _json_key with the key as password: {asked:#?}"
    );
    assert!(
        asked.iter().all(|r| r.user.as_deref() == Some("_json_key")),
        "credentials of another user were presented: {asked:#?}"
    );
    let id = cli.ok(&["jobs", "-q"]).lines()[0]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    // the key's secret part, and the whole key
    assert_secret_nowhere(
        &world,
        &cli,
        &id,
        &pulled,
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    );
    assert_secret_nowhere(&world, &cli, &id, &pulled, &password);

    // a file of USER:PASSWORD is the other form; a wrong key is refused
    std::fs::write(&file, format!("_json_key:{password}\n")).unwrap();
    // USER:PASSWORD whose password is the key, newlines and all
    cli.ok(&[
        "pull",
        &world.image("cli/gcr:1"),
        "gcr-userpass",
        "--creds-file",
        file.to_str().unwrap(),
    ]);
    std::fs::write(
        &file,
        "{\"type\": \"service_account\", \"private_key\": \"other\"}\n",
    )
    .unwrap();
    let ran = cli
        .run(&[
            "pull",
            &world.image("cli/gcr:1"),
            "gcr-other",
            "--creds-file",
            file.to_str().unwrap(),
        ])
        .fails();
    assert!(ran.error().contains("unauthorized"), "{}", ran.stderr);
}

/// `hoist build` has every field of `POST /builds`: on a registry with htpasswd auth, a
/// build on top of a private base with `--creds` for the target and `--base-creds` for the
/// base, and every config flag; the pushed config says what the flags said, the stored
/// request holds every field, and the password shows nowhere.
#[tokio::test]
async fn build_takes_every_api_field_and_both_credentials() {
    let world = World::builder()
        .auth(RegistryAuth::basic("alice", PASSWORD))
        .start()
        .await;
    world.push(&SMALL, "cli/base:1", Format::Oci);
    let src = world.root().join("app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "built with every flag\n").unwrap();
    let cli = Cli::new(&world.hoist.base_url(), Via::Flag);
    let creds = format!("alice:{PASSWORD}");
    let target = world.image("cli/full:1");
    let built = cli.ok(&[
        "build",
        "app",
        &target,
        "--base",
        &world.image("cli/base:1"),
        "--entrypoint",
        "/bin/app",
        "--cmd",
        "serve",
        "--env",
        "K=V",
        "--working-dir",
        "/srv",
        "--user",
        "1000:1000",
        "--label",
        "team=x",
        "--expose",
        "8080/tcp",
        "--compression",
        "zstd",
        "--keep-owners",
        "--source-date-epoch",
        "7",
        "--creds",
        &creds,
        "--base-creds",
        &creds,
        "-o",
        "json",
    ]);
    let digest = built.json()["result"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    let id = cli.ok(&["jobs", "--kind", "build", "-q"]).lines()[0]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let job = cli.ok(&["job", &id, "-o", "json"]).json();
    let request = &job["request"];
    assert_eq!(request["base"], world.image("cli/base:1").as_str(), "{job}");
    assert_eq!(request["compression"], "zstd", "{job}");
    assert_eq!(request["keep_owners"], true, "{job}");
    assert_eq!(request["source_date_epoch"], 7, "{job}");
    assert_eq!(
        request["config"],
        json!({"entrypoint": ["/bin/app"], "cmd": ["serve"], "env": ["K=V"],
               "working_dir": "/srv", "user": "1000:1000", "labels": {"team": "x"},
               "exposed_ports": ["8080/tcp"]}),
        "{job}"
    );

    // skopeo is the judge of what was pushed (`hoist inspect` takes no credentials yet)
    let pushed = common::image::inspect(&world.registry, "cli/full:1", None);
    assert_eq!(pushed["Digest"], digest.as_str(), "{pushed}");
    let manifest: Value =
        serde_json::from_slice(&common::image::inspect_raw(&world.registry, "cli/full:1"))
            .expect("manifest JSON");
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(layers.len() >= 2, "base layers and the new one: {manifest}");
    assert!(
        layers.last().unwrap()["mediaType"]
            .as_str()
            .is_some_and(|m| m.ends_with("+zstd")),
        "{manifest}"
    );
    let config = common::image::inspect_config(&world.registry, "cli/full:1", None);
    let runtime = &config["config"];
    assert_eq!(runtime["WorkingDir"], "/srv", "{config}");
    assert_eq!(runtime["User"], "1000:1000", "{config}");
    assert_eq!(runtime["Labels"]["team"], "x", "{config}");
    assert!(
        runtime["ExposedPorts"].get("8080/tcp").is_some(),
        "{config}"
    );
    assert_eq!(runtime["Entrypoint"], json!(["/bin/app"]), "{config}");
    assert_eq!(runtime["Cmd"], json!(["serve"]), "{config}");
    assert_eq!(config["created"], "1970-01-01T00:00:07Z", "{config}");
    assert_secret_nowhere(&world, &cli, &id, &built, PASSWORD);
}
