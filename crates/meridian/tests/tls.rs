//! TLS on both ports (`[tls]`, `--tls-cert --tls-key --tls-client-ca`): with a client CA,
//! only clients presenting a certificate it signed get in, over gRPC and HTTP, and a
//! refused client changes nothing; nodes, MetaClient and ctl speak TLS; a follower forwards
//! to the leader over TLS with its own certificate and redirects HTTP to `https://`.

mod common;

use common::*;
use meridian_client::{ClientTls, MetaClient};
use meridian_model::{PartitionRule, TableName};
use meridian_server::{HaServer, Role, ServerConfig, StoreKind, TlsConfig};
use meridian_sim::node::SimNode;
use meridian_store::etcd::LocalEtcd;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed
/// by it, and a client certificate the CA never signed; written as PEM files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client: ClientTls,
    client_cert: PathBuf,
    client_key: PathBuf,
    stranger: ClientTls,
    ca_pem: String,
}

fn leaf(
    names: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
    issuer: &CertifiedIssuer<'_, KeyPair>,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = usages;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki(dir: &Path) -> Pki {
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let real_ca = ca("meridian test CA");
    let rogue_ca = ca("someone else");
    // Servers present their certificate to clients, and to the leader when forwarding.
    let (server_cert, server_key) = leaf(
        &["localhost", "127.0.0.1"],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        &real_ca,
    );
    let (client_cert, client_key) = leaf(
        &["ctl"],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        &real_ca,
    );
    let (rogue_cert, rogue_key) = leaf(
        &["intruder"],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        &rogue_ca,
    );
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca_pem = real_ca.pem();
    Pki {
        ca: write("ca.pem", &ca_pem),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client: ClientTls::new(ca_pem.clone())
            .with_identity(client_cert.clone(), client_key.clone()),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        stranger: ClientTls::new(ca_pem.clone()).with_identity(rogue_cert, rogue_key),
        ca_pem,
    }
}

impl Pki {
    /// A client of the default cluster at gRPC `addr`, with the CA's client certificate.
    async fn meta_client(&self, addr: &str) -> MetaClient {
        MetaClient::connect_with(&[addr.to_string()], "default", None, Some(&self.client))
            .await
            .unwrap()
    }

    fn server_tls(&self) -> TlsConfig {
        TlsConfig {
            cert_file: self.server_cert.clone(),
            key_file: self.server_key.clone(),
            client_ca_file: Some(self.ca.clone()),
        }
    }

    /// A reqwest client trusting the CA, presenting the client certificate if `identity`.
    fn web(&self, identity: bool) -> reqwest::Client {
        self.web_builder(identity).build().unwrap()
    }

    /// Like [`Pki::web`] with a certificate, not following redirects.
    fn web_without_redirects(&self) -> reqwest::Client {
        self.web_builder(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn web_builder(&self, identity: bool) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(5));
        if identity {
            let (cert, key) = self.client.identity_pem().unwrap();
            builder = builder.identity(reqwest::Identity::from_pem(&[cert, key].concat()).unwrap());
        }
        builder
    }
}

async fn table_count(server: &meridian_server::RunningServer) -> usize {
    server.meta.cluster("default").unwrap().table_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_holding_its_certificates_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut config = memory_config();
    config.tls = Some(pki.server_tls());
    let server = start(config).await;
    let grpc = server.grpc_addr.to_string();

    // Nodes join over TLS with a client certificate.
    let nodes: Vec<SimNode> = (0..3)
        .map(|i| {
            let mut c = node_config(&server, "tls", i, 3);
            c.tls = Some(pki.client.clone());
            SimNode::start(c)
        })
        .collect();
    shards_ready(&server, &nodes).await;

    // gRPC: a client with a certificate from the CA creates a table.
    let client = pki.meta_client(&grpc).await;
    let name = TableName::new("default", "public", "secure").unwrap();
    client
        .create_table(&name, &PartitionRule::None, false)
        .await
        .unwrap();
    assert_eq!(table_count(&server).await, 1);

    // Without a certificate, with one the CA never signed, or in plain text: nothing gets
    // through, and nothing changes.
    let intruder = TableName::new("default", "public", "intruder").unwrap();
    let no_identity = ClientTls::new(pki.ca_pem.clone());
    for (what, tls) in [
        ("no client certificate", Some(&no_identity)),
        ("a certificate from another CA", Some(&pki.stranger)),
        ("plain text", None),
    ] {
        let refused =
            match MetaClient::connect_with(std::slice::from_ref(&grpc), "default", None, tls).await
            {
                Ok(c) => c
                    .create_table(&intruder, &PartitionRule::None, false)
                    .await
                    .err(),
                Err(e) => Some(e),
            };
        assert!(refused.is_some(), "{what}: the create went through");
    }
    assert_eq!(table_count(&server).await, 1);

    // HTTP: with the certificate the API answers; without it, or in plain text, no answer.
    let https = format!("https://{}", server.http_addr);
    let tables: serde_json::Value = pki
        .web(true)
        .get(format!("{https}/api/v1/clusters/default/tables"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tables.to_string().contains("secure"), "{tables}");
    let drop_url = format!("{https}/api/v1/clusters/default/tables/default/public/secure");
    assert!(pki.web(false).delete(&drop_url).send().await.is_err());
    let plain = reqwest::Client::new()
        .delete(format!(
            "http://{}/api/v1/clusters/default/tables/default/public/secure",
            server.http_addr
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "{plain:?}"
    );
    assert_eq!(table_count(&server).await, 1);

    // ctl: --ca makes addresses https; --cert/--key answer the server's request.
    let ctl_tls = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"));
        cmd.args(["ctl", "--addr", &server.http_addr.to_string(), "--ca"])
            .arg(&pki.ca)
            .args(extra)
            .args(["tables", "--json"]);
        cmd
    };
    let mut with_cert = ctl_tls(&[]);
    with_cert
        .arg("--cert")
        .arg(&pki.client_cert)
        .arg("--key")
        .arg(&pki.client_key);
    let out = tokio::task::spawn_blocking(move || with_cert.output())
        .await
        .unwrap()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("secure"), "{text}");
    let mut without = ctl_tls(&[]);
    let out = tokio::task::spawn_blocking(move || without.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success(), "ctl without a certificate got in");

    for n in nodes {
        n.agent.stop().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_are_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut config = memory_config();
    config.tls = Some(TlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: dir.path().join("missing.key"),
        client_ca_file: None,
    });
    let err = meridian_server::Server::start(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.key"), "{err}");
    // A certificate with another certificate's key.
    let mut config = memory_config();
    config.tls = Some(TlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.client_key.clone(),
        client_ca_file: None,
    });
    let err = meridian_server::Server::start(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("do not go together"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_forwards_to_the_leader_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let ha = |name: &str| {
        let mut c = ServerConfig {
            store: StoreKind::Etcd,
            grpc_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            http_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            name: name.into(),
            tls: Some(pki.server_tls()),
            ..Default::default()
        };
        c.etcd.endpoints = etcd.endpoints();
        c
    };
    let a = HaServer::start(ha("a")).await.unwrap();
    let b = HaServer::start(ha("b")).await.unwrap();
    let leader = eventually(Duration::from_secs(20), || async {
        [&a, &b]
            .iter()
            .position(|s| matches!(s.role(), Role::Leader { .. }))
    })
    .await;
    let (leader, follower) = if leader == 0 { (&a, &b) } else { (&b, &a) };

    // DDL sent to the follower alone is forwarded to the leader over TLS.
    let follower_grpc = follower.grpc_addr.to_string();
    let client = pki.meta_client(&follower_grpc).await;
    // (A schema: a table would need nodes.)
    let created = eventually(Duration::from_secs(20), || {
        let client = client.clone();
        async move {
            client
                .create_schema("default", "forwarded", false)
                .await
                .ok()
        }
    })
    .await;
    assert!(created);
    let web = pki.web_without_redirects();
    let schemas = web
        .get(format!(
            "https://{}/api/v1/clusters/default/schemas?catalog=default",
            leader.http_addr
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(schemas.contains("forwarded"), "{schemas}");

    // HTTP: the follower redirects to the leader's https address.
    let redirected = web
        .get(format!("https://{}/api/v1/clusters", follower.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 307);
    assert_eq!(
        redirected.headers()["location"],
        format!("https://{}/api/v1/clusters", leader.http_addr).as_str()
    );
    a.shutdown().await;
    b.shutdown().await;
}
