//! Configuration without a server: URLs, `with_config` pairs, typed setters and the environment
//! end in the same configuration; the reference reopens to it; typed credentials never reach a
//! reference or `Debug`; unknown options are named.

use flowstore_core::{Capabilities, FlowInput, OpenContext, Registry, Storage, StorageReference};
use flowstore_git::{
    Bitbucket, BitbucketBuilder, CodeCommit, CodeCommitBuilder, Git, GitBuilder, GitHub,
    GitHubBuilder, GitLab, GitLabBuilder,
};

fn registry() -> Registry {
    let mut r = Registry::new();
    flowstore_git::register(&mut r);
    r
}

fn reopen(s: &dyn Storage) -> StorageReference {
    let reference = s.reference().unwrap();
    let again = registry().open(&reference).unwrap().reference().unwrap();
    assert_eq!(
        again, reference,
        "the reference reopens to the same storage"
    );
    reference
}

#[test]
fn git_urls_in_every_documented_form() {
    let cases = [
        (
            "git+https://github.com/org/repo.git#branch=main",
            GitBuilder::new("org/repo", "f.py").branch("main"),
        ),
        (
            "git+https://github.com/org/repo#tag=v1.0%2Bbuild",
            GitBuilder::new("org/repo", "f.py").tag("v1.0+build"),
        ),
        (
            "git+https://github.com/org/repo.git#tag=v1+b",
            GitBuilder::new("org/repo", "f.py").tag("v1+b"),
        ),
        (
            "git+http://git.local:8080/group/sub/repo.git?pin=true&label=prod#commit=0123456789012345678901234567890123456789",
            GitBuilder::new("group/sub/repo", "f.py")
                .host("git.local:8080")
                .scheme("http")
                .commit("0123456789012345678901234567890123456789")
                .pin(true)
                .label("prod"),
        ),
        (
            "git://127.0.0.1:9418/org/repo.git#branch=release/2.0&pin",
            GitBuilder::new("org/repo", "f.py")
                .host("127.0.0.1:9418")
                .scheme("git")
                .branch("release/2.0")
                .pin(true),
        ),
        (
            "git+ssh://deploy@git.example.com:2222/org/repo.git?ssh_key_path=/keys/id&known_hosts_path=/keys/kh#branch=main",
            GitBuilder::new("org/repo", "f.py")
                .host("git.example.com:2222")
                .ssh(
                    "deploy",
                    Some("/keys/id".to_string()),
                    Some("/keys/kh".to_string()),
                )
                .branch("main"),
        ),
        (
            "git+https://github.com/org/repo.git?git_token_secret_name=GH&submodules=true&sparse_paths=lib/&clone_depth=0#token_secret=GH2",
            GitBuilder::new("org/repo", "f.py")
                .git_token_secret_name("GH2")
                .submodules(true)
                .sparse_paths(vec!["lib/".into()])
                .clone_depth(0),
        ),
    ];
    for (url, want) in cases {
        let got = GitBuilder::from_url(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .flow_path("f.py")
            .build()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let want = want.build().unwrap();
        assert_eq!(got.config(), want.config(), "{url}");
        assert_eq!(got.labels(), want.labels(), "{url}");
        // Through the registry, with the script path from the context; then the reference.
        let opened = registry().open_url_script(url, "f.py").unwrap();
        let reference = reopen(&*opened);
        let back = Git::from_reference(&reference, &OpenContext::default()).unwrap();
        assert_eq!(back.config(), want.config(), "{url}");
    }
}

#[test]
fn bad_git_urls_and_options_are_named() {
    let e = GitBuilder::from_url("git+https://h/o/r.git#nope=1")
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"nope\"") && e.contains("branch_name"), "{e}");
    let e = GitBuilder::from_url("git+https://h/o/r.git?pin=maybe")
        .unwrap_err()
        .to_string();
    assert!(e.contains("pin"), "{e}");
    let e = GitBuilder::from_url("https://h/o/r.git")
        .unwrap_err()
        .to_string();
    assert!(e.contains("git+https://"), "{e}");
    let e = GitBuilder::from_url("git+https://h/")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no repository"), "{e}");
    let e = GitBuilder::from_url("git+ssh://u:pw-c4n4ry@h/o/r.git")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no password") && !e.contains("c4n4ry"), "{e}");
    // No flow path: a clear error, as the CLI has always said.
    let e = registry()
        .open_url("git+https://h/o/r.git")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--script"), "{e}");
    let e = Git::builder("o/r", "f.py")
        .branch("a")
        .tag("b")
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("only one of"), "{e}");
    let e = Git::builder("o/r", "f.py")
        .scheme("ftp")
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("ftp"), "{e}");
    assert!(Git::builder("o/r", "f.py")
        .with_config("clone_depth", "deep")
        .is_err());
}

#[test]
fn context_options_apply_after_the_url() {
    let s = registry()
        .open_url_with(
            "git+https://github.com/org/repo.git?label=a#branch=main",
            [
                ("flow_path", "flows/x.py"),
                ("branch", "dev"),
                ("label", "b"),
                ("add_default_labels", "false"),
                ("secret", "DB_PASSWORD"),
            ],
        )
        .unwrap();
    let reference = s.reference().unwrap();
    assert_eq!(reference.fields["branch_name"], "dev");
    assert_eq!(reference.fields["flow_path"], "flows/x.py");
    assert_eq!(reference.labels, ["a", "b"]);
    assert_eq!(reference.secrets, ["DB_PASSWORD"]);
    let e = registry()
        .open_url_with("github://o/r/f.py", [("bogus", "1")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"bogus\"") && e.contains("also takes label"),
        "{e}"
    );
}

#[test]
fn api_urls_setters_and_pairs_end_in_the_same_configuration() {
    // GitHub
    let from_url = GitHubBuilder::from_url(
        "github://org/flows/dir/my%20flow.py?ref=v1&access_token_secret=GH&base_url=https://ghe.example.com/api/v3&label=x",
    )
    .unwrap()
    .build()
    .unwrap();
    let typed = GitHub::builder("org/flows", "dir/my flow.py")
        .git_ref("v1")
        .access_token_secret("GH")
        .base_url("https://ghe.example.com/api/v3")
        .label("x")
        .build()
        .unwrap();
    let pairs = GitHubBuilder::new("", "")
        .with_configs([
            ("repo", "org/flows"),
            ("path", "dir/my flow.py"),
            ("ref", "v1"),
            ("access_token_secret", "GH"),
            ("base_url", "https://ghe.example.com/api/v3"),
            ("label", "x"),
        ])
        .unwrap()
        .build()
        .unwrap();
    for s in [&typed, &pairs] {
        assert_eq!(s.config(), from_url.config());
        assert_eq!(s.labels(), from_url.labels());
    }
    reopen(&from_url);
    assert!(GitHub::builder("no-slash", "f.py").build().is_err());

    // GitLab: gitlab.com is the default host, so it is not recorded.
    let a = GitLabBuilder::from_url("gitlab://gitlab.com/g/s/p/-/f.py?ref=main")
        .unwrap()
        .build()
        .unwrap();
    let b = GitLab::builder("g/s/p", "f.py")
        .git_ref("main")
        .build()
        .unwrap();
    assert_eq!(a.config(), b.config());
    assert_eq!(a.config().host, None);
    let c = GitLabBuilder::from_url("gitlab+http://gl.local:8080/g/p?path=f.py")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(c.config().host.as_deref(), Some("http://gl.local:8080"));
    assert_eq!(c.config().repo, "g/p");
    reopen(&c);
    let e = GitLabBuilder::from_url("gitlab://gl.local/g/p")
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`path`"), "{e}");

    // Bitbucket Server and Cloud.
    let server = BitbucketBuilder::from_url("bitbucket://bb.local/PROJ/repo/f.py?ref=main")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        server.config(),
        Bitbucket::server("https://bb.local", "PROJ", "repo", "f.py")
            .git_ref("main")
            .build()
            .unwrap()
            .config()
    );
    let cloud = BitbucketBuilder::from_url("bitbucket://bitbucket.org/ws/repo/f.py")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        cloud.config(),
        Bitbucket::cloud("ws", "repo", "f.py")
            .build()
            .unwrap()
            .config()
    );
    assert_eq!(
        cloud.config(),
        Bitbucket::builder("repo", "f.py")
            .workspace("ws")
            .build()
            .unwrap()
            .config()
    );
    assert!(Bitbucket::builder("repo", "f.py").build().is_err());
    assert!(Bitbucket::builder("repo", "f.py")
        .host("https://bb.local")
        .project("PROJ")
        .build()
        .is_ok());
    reopen(&server);
    reopen(&cloud);
    assert!(BitbucketBuilder::from_url("bitbucket://bb.local/PROJ").is_err());

    // CodeCommit: `region` and `endpoint_url` go to client_options.
    let cc = CodeCommitBuilder::from_url(
        "codecommit://My_Repo/flows/f.py?region=eu-west-1&endpoint_url=https://vpce.example.com/&commit=main",
    )
    .unwrap()
    .build()
    .unwrap();
    let typed = CodeCommit::builder("My_Repo", "flows/f.py")
        .region("eu-west-1")
        .endpoint_url("https://vpce.example.com/")
        .commit("main")
        .build()
        .unwrap();
    assert_eq!(cc.config(), typed.config());
    assert_eq!(
        cc.config().repo,
        "My_Repo",
        "the repository name keeps its case"
    );
    reopen(&cc);
}

#[test]
fn typed_credentials_never_reach_a_reference_or_debug() {
    let canary = "c4n4ry-s3cr3t";
    let secret = || canary.to_string().into();
    let git = Git::builder("o/r", "f.py").access_token(secret());
    let gh = GitHub::builder("o/r", "f.py").access_token(secret());
    let gl = GitLab::builder("o/r", "f.py").access_token(secret());
    let bbs = Bitbucket::server("https://h", "P", "r", "f.py").access_token(secret());
    let bbc = Bitbucket::cloud("w", "r", "f.py").app_password("me", secret());
    let cc = CodeCommit::builder("r", "f.py")
        .access_key_id(secret())
        .secret_access_key(secret())
        .session_token(secret());
    let debug = format!("{git:?} {gh:?} {gl:?} {bbs:?} {bbc:?} {cc:?}");
    assert!(!debug.contains(canary), "{debug}");
    let storages: Vec<Box<dyn Storage>> = vec![
        Box::new(git.build().unwrap()),
        Box::new(gh.build().unwrap()),
        Box::new(gl.build().unwrap()),
        Box::new(bbs.build().unwrap()),
        Box::new(bbc.build().unwrap()),
        Box::new(cc.build().unwrap()),
    ];
    for s in storages {
        let json = s.reference().unwrap().to_json();
        assert!(!json.contains(canary), "{json}");
        assert!(!format!("{s:?}").contains(canary), "{s:?}");
        // Git serves bundles (directories of the repository); the API storages do not.
        let bundles = s.type_name() == "Git";
        assert_eq!(
            s.capabilities(),
            Capabilities {
                bundles,
                ..Capabilities::READ_ONLY_SCRIPTS
            },
            "{}",
            s.type_name()
        );
    }
    // Credentials in client_options would be recorded: refused.
    let e = CodeCommit::builder("r", "f.py")
        .with_config("aws_secret_access_key", "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("aws_secret_access_key"), "{e}");
}

#[test]
fn labels_are_set_the_same_way_everywhere() {
    let from_builder = GitHub::builder("o/r", "f.py")
        .label("a")
        .labels(["b", "a"])
        .add_default_labels(false)
        .build()
        .unwrap();
    let from_url =
        GitHubBuilder::from_url("github://o/r/f.py?label=a&label=b&add_default_labels=false")
            .unwrap()
            .build()
            .unwrap();
    assert_eq!(from_builder.labels(), ["a", "b"]);
    assert_eq!(from_builder.index(), from_url.index());
    assert_eq!(from_builder.reference().unwrap().labels, ["a", "b"]);
    let git = GitBuilder::from_url("git+https://h/o/r.git?label=a,b")
        .unwrap()
        .flow_path("f.py")
        .build()
        .unwrap();
    assert_eq!(git.index().labels, ["a", "b"]);
}

/// One test sets and reads the environment (tests in a binary share it).
#[test]
fn from_env_records_the_providers_standard_variables() {
    let vars = [
        ("GITHUB_API_URL", "https://ghe.example.com/api/v3"),
        ("GITLAB_URL", ""),
        ("GITLAB_HOST", "gitlab.example.com"),
        ("BITBUCKET_HOST", "https://bb.example.com"),
        ("BITBUCKET_PROJECT", "PROJ"),
        ("BITBUCKET_WORKSPACE", ""),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_ENDPOINT_URL_CODECOMMIT", "https://vpce.example.com/"),
        ("FLOWSTORE_GIT_CACHE", "/tmp/flowstore-git-from-env-test"),
    ];
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let gh = GitHubBuilder::from_env("o/r", "f.py")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        gh.config().base_url.as_deref(),
        Some("https://ghe.example.com/api/v3")
    );
    let gl = GitLabBuilder::from_env("g/p", "f.py")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        gl.config().host.as_deref(),
        Some("https://gitlab.example.com")
    );
    let bb = BitbucketBuilder::from_env("r", "f.py")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(bb.config().host.as_deref(), Some("https://bb.example.com"));
    assert_eq!(bb.config().project.as_deref(), Some("PROJ"));
    assert_eq!(bb.config().workspace, None);
    let cc = CodeCommitBuilder::from_env("r", "f.py")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(cc.config().client_options["region_name"], "eu-central-1");
    assert_eq!(
        cc.config().client_options["endpoint_url"],
        "https://vpce.example.com/"
    );
    let git = GitBuilder::from_env("o/r", "f.py")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        git.cache_dir(),
        std::path::Path::new("/tmp/flowstore-git-from-env-test")
    );
    // What from_env read is in the reference; build() itself reads none of it.
    for s in [&gh as &dyn Storage, &gl, &bb, &cc] {
        reopen(s);
    }
    let plain = GitHub::builder("o/r", "f.py").build().unwrap();
    assert_eq!(plain.config().base_url, None);
    std::env::set_var("FLOWSTORE_GIT_CACHE_MAX_SIZE", "lots");
    assert!(GitBuilder::from_env("o/r", "f.py").is_err());
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    std::env::remove_var("FLOWSTORE_GIT_CACHE_MAX_SIZE");
}

#[tokio::test]
async fn the_api_storages_refuse_bundle_flows_and_git_records_their_directory() {
    let secret = || "token".to_string().into();
    let storages: Vec<Box<dyn Storage>> = vec![
        Box::new(
            GitHub::builder("o/r", "f.py")
                .access_token(secret())
                .build()
                .unwrap(),
        ),
        Box::new(
            GitLab::builder("o/r", "f.py")
                .access_token(secret())
                .build()
                .unwrap(),
        ),
        Box::new(
            Bitbucket::server("https://h", "P", "r", "f.py")
                .access_token(secret())
                .build()
                .unwrap(),
        ),
        Box::new(
            CodeCommit::builder("r", "f.py")
                .region("eu-west-1")
                .access_key_id(secret())
                .secret_access_key(secret())
                .build()
                .unwrap(),
        ),
    ];
    for mut s in storages {
        let err = s
            .add_flow(FlowInput::bundle("Bundled", "project", "flow.py"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, flowstore_core::Error::Unsupported { .. }),
            "{}: {err:?}",
            s.type_name()
        );
        assert!(err.to_string().contains("\"Bundled\""), "{err}");
        assert!(s.flows().is_empty(), "{}: {:?}", s.type_name(), s.flows());
        let dest = tempfile::tempdir().unwrap();
        let err = s
            .get_bundle("Bundled", dest.path(), &Default::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, flowstore_core::Error::Unsupported { .. }),
            "{err:?}"
        );
    }

    // Git: the directory and the entry file are recorded (no server needed to register).
    let mut git = Git::builder("o/r", "f.py").build().unwrap();
    let location = git
        .add_flow(FlowInput::bundle(
            "Bundled",
            "./projects/etl/",
            "./flows/etl.py",
        ))
        .await
        .unwrap();
    assert_eq!(location, "bundle:projects/etl//flows/etl.py");
    let at_root = git
        .add_flow(FlowInput::bundle("At root", ".", "flow.py"))
        .await
        .unwrap();
    assert_eq!(at_root, "bundle:.//flow.py");
    let reference = reopen(&git);
    assert_eq!(reference.flows["Bundled"], location);
    for (dir, entry) in [("../out", "f.py"), ("/etc", "f.py"), ("p", "../f.py")] {
        let err = git
            .add_flow(FlowInput::bundle("Bad", dir, entry))
            .await
            .unwrap_err();
        assert!(
            matches!(err, flowstore_core::Error::Config { .. }),
            "{dir} {entry}: {err:?}"
        );
        assert!(err.to_string().contains("\"Bad\""), "{err}");
    }
    // A script path shaped like a bundle location is refused, so locations stay unambiguous.
    assert!(git.add_flow_at("Script", "bundle:a//b.py").is_err());
}
