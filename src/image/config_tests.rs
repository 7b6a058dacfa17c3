use super::*;
use crate::error::ErrorCode;

const CREATED: &str = "2024-05-01T12:00:00Z";

fn diff_id() -> Digest {
    Digest::sha256_of(b"layer")
}

fn build(base: Option<&Value>, overrides: &ConfigOverrides, platform: &str) -> Value {
    let bytes = build_config(
        base,
        overrides,
        &platform.parse().unwrap(),
        &diff_id(),
        CREATED,
        "hoist build app/dist",
    );
    serde_json::from_slice(&bytes).unwrap()
}

fn base() -> Value {
    json!({
        "architecture": "amd64", "os": "linux", "os.version": "x", "author": "someone",
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop)"]},
        "config": {
            "Env": ["PATH=/usr/bin", "LANG=C"], "Cmd": ["bash"], "Entrypoint": null,
            "Labels": {"a": "1", "b": "2"}, "ExposedPorts": {"22/tcp": {}},
            "Healthcheck": {"Test": ["CMD", "true"]}, "User": "root"
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:base"]},
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "ADD rootfs"}]
    })
}

#[test]
fn without_base_config_is_exact_and_sorted() {
    let overrides = ConfigOverrides {
        entrypoint: Some(vec!["/app".into()]),
        exposed_ports: Some(vec!["8080".into()]),
        ..Default::default()
    };
    let bytes = build_config(
        None,
        &overrides,
        &"linux/arm64/v8".parse().unwrap(),
        &diff_id(),
        CREATED,
        "hoist",
    );
    let expected = format!(
        r#"{{"architecture":"arm64","config":{{"Entrypoint":["/app"],"ExposedPorts":{{"8080/tcp":{{}}}}}},"created":"{CREATED}","history":[{{"created":"{CREATED}","created_by":"hoist"}}],"os":"linux","rootfs":{{"diff_ids":["{}"],"type":"layers"}},"variant":"v8"}}"#,
        diff_id()
    );
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[test]
fn base_env_is_merged_by_key_in_place() {
    let overrides = ConfigOverrides {
        env: Some(vec!["LANG=C.UTF-8".into(), "APP=1".into()]),
        ..Default::default()
    };
    let c = build(Some(&base()), &overrides, "linux/amd64");
    assert_eq!(
        c["config"]["Env"],
        json!(["PATH=/usr/bin", "LANG=C.UTF-8", "APP=1"])
    );
}

#[test]
fn labels_merge_and_ports_add_to_the_base() {
    let overrides = ConfigOverrides {
        labels: Some(BTreeMap::from([
            ("b".into(), "new".into()),
            ("c".into(), "3".into()),
        ])),
        exposed_ports: Some(vec!["53/UDP".into()]),
        ..Default::default()
    };
    let c = build(Some(&base()), &overrides, "linux/amd64");
    assert_eq!(
        c["config"]["Labels"],
        json!({"a": "1", "b": "new", "c": "3"})
    );
    assert_eq!(
        c["config"]["ExposedPorts"],
        json!({"22/tcp": {}, "53/udp": {}})
    );
}

#[test]
fn entrypoint_resets_base_cmd_unless_cmd_given() {
    let only_entrypoint = ConfigOverrides {
        entrypoint: Some(vec!["/app".into()]),
        ..Default::default()
    };
    let c = build(Some(&base()), &only_entrypoint, "linux/amd64");
    assert_eq!(c["config"]["Entrypoint"], json!(["/app"]));
    assert!(c["config"].get("Cmd").is_none(), "{c}");

    let both = ConfigOverrides {
        cmd: Some(vec!["--serve".into()]),
        ..only_entrypoint
    };
    let c = build(Some(&base()), &both, "linux/amd64");
    assert_eq!(c["config"]["Cmd"], json!(["--serve"]));

    let c = build(Some(&base()), &ConfigOverrides::default(), "linux/amd64");
    assert_eq!(c["config"]["Cmd"], json!(["bash"]));
}

#[test]
fn base_layers_history_and_other_settings_are_kept() {
    let overrides = ConfigOverrides {
        user: Some("1000".into()),
        working_dir: Some("/srv".into()),
        ..Default::default()
    };
    let c = build(Some(&base()), &overrides, "linux/amd64");
    assert_eq!(
        c["rootfs"],
        json!({"type": "layers", "diff_ids": ["sha256:base", diff_id().to_string()]})
    );
    let history = c["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[1],
        json!({"created": CREATED, "created_by": "hoist build app/dist"})
    );
    assert_eq!(c["config"]["Healthcheck"], json!({"Test": ["CMD", "true"]}));
    assert_eq!(c["config"]["User"], "1000");
    assert_eq!(c["config"]["WorkingDir"], "/srv");
    assert_eq!(c["os.version"], "x");
    assert_eq!(c["created"], CREATED);
    // Facts about how the base was built are not carried over.
    assert!(c.get("container_config").is_none() && c.get("author").is_none());
}

#[test]
fn overrides_refuse_unknown_fields() {
    let ok: ConfigOverrides =
        serde_json::from_str(r#"{"entrypoint":["/a"],"cmd":[],"env":["K=V"],"working_dir":"/","user":"1000","labels":{},"exposed_ports":["8080/tcp"]}"#)
            .unwrap();
    assert_eq!(ok.cmd, Some(vec![]));
    let e = serde_json::from_str::<ConfigOverrides>(r#"{"Entrypoint":["/a"]}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
}

#[test]
fn validate_refuses_bad_env_ports_and_labels() {
    let cases = [
        (
            ConfigOverrides {
                env: Some(vec!["NOVALUE".into()]),
                ..Default::default()
            },
            "env",
        ),
        (
            ConfigOverrides {
                env: Some(vec!["=x".into()]),
                ..Default::default()
            },
            "env",
        ),
        (
            ConfigOverrides {
                exposed_ports: Some(vec!["http".into()]),
                ..Default::default()
            },
            "exposed_ports",
        ),
        (
            ConfigOverrides {
                exposed_ports: Some(vec!["80/icmp".into()]),
                ..Default::default()
            },
            "exposed_ports",
        ),
        (
            ConfigOverrides {
                exposed_ports: Some(vec!["0".into()]),
                ..Default::default()
            },
            "exposed_ports",
        ),
        (
            ConfigOverrides {
                labels: Some(BTreeMap::from([(String::new(), "v".into())])),
                ..Default::default()
            },
            "labels",
        ),
    ];
    for (overrides, field) in cases {
        let e = overrides.validate().unwrap_err();
        assert_eq!(e.code(), "invalid_config");
        assert!(
            e.to_string().starts_with(&format!("config {field} ")),
            "{e}"
        );
    }
    let fine = ConfigOverrides {
        env: Some(vec!["K=".into(), "A=b=c".into()]),
        exposed_ports: Some(vec!["8080".into(), "53/udp".into()]),
        ..Default::default()
    };
    fine.validate().unwrap();
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let o = ConfigOverrides {
        labels: Some(BTreeMap::from([
            ("z".into(), "1".into()),
            ("a".into(), "2".into()),
        ])),
        ..Default::default()
    };
    let platform = "linux/amd64".parse().unwrap();
    let one = build_config(Some(&base()), &o, &platform, &diff_id(), CREATED, "x");
    let two = build_config(Some(&base()), &o, &platform, &diff_id(), CREATED, "x");
    assert_eq!(one, two);
}
