//! The EC2 client: its forms and answer documents (as moto 5.2.5 and AWS write them), and the
//! real client against moto's EC2 and STS server (`needs_moto`).

use super::*;

#[test]
fn launch_form_has_imdsv2_tags_user_data_and_token() {
    let req = LaunchRequest {
        image_id: "ami-1".into(),
        instance_type: "m7g.large".into(),
        subnet_id: "subnet-a".into(),
        security_group_ids: vec!["sg-1".into(), "sg-2".into()],
        user_data: "#!/bin/sh\necho hi\n".into(),
        tags: BTreeMap::from([
            ("fleetfn:provider".to_owned(), "p 1".to_owned()),
            ("fleetfn:zone".to_owned(), "us-east-1a".to_owned()),
        ]),
        client_token: "tok".into(),
        instance_profile: Some("arn:aws:iam::1:instance-profile/x".into()),
    };
    let body = launch_form(&req).finish("RunInstances");
    let pairs: Vec<(String, String)> = body
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect();
    let get = |k: &str| pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    assert_eq!(get("Action"), Some("RunInstances"));
    assert_eq!(get("Version"), Some("2016-11-15"));
    assert_eq!(get("MinCount"), Some("1"));
    assert_eq!(get("MaxCount"), Some("1"));
    assert_eq!(get("SecurityGroupId.2"), Some("sg-2"));
    assert_eq!(get("MetadataOptions.HttpTokens"), Some("required"));
    assert_eq!(get("UserData"), Some("IyEvYmluL3NoCmVjaG8gaGkK"));
    assert_eq!(get("ClientToken"), Some("tok"));
    assert_eq!(
        get("IamInstanceProfile.Arn"),
        Some("arn:aws:iam::1:instance-profile/x")
    );
    assert_eq!(get("TagSpecification.1.ResourceType"), Some("instance"));
    assert_eq!(
        get("TagSpecification.1.Tag.1.Key"),
        Some("fleetfn:provider")
    );
    assert_eq!(get("TagSpecification.1.Tag.1.Value"), Some("p 1"));
    assert_eq!(get("TagSpecification.2.ResourceType"), Some("volume"));
    assert_eq!(get("TagSpecification.2.Tag.2.Value"), Some("us-east-1a"));
    // Values are escaped: a tag value cannot add parameters.
    assert!(body.contains("p%201"));
}

#[test]
fn filters_and_lists_are_numbered_from_one() {
    let mut f = Form::default();
    f.filters(&[
        Filter::new("tag:fleetfn:provider", &["p1"]),
        Filter::new("instance-state-name", &["pending", "running"]),
    ]);
    f.list("InstanceId", &["i-1".to_owned(), "i-2".to_owned()]);
    assert_eq!(
        f.finish("X"),
        "Action=X&Version=2016-11-15&Filter.1.Name=tag%3Afleetfn%3Aprovider&Filter.1.Value.1=p1\
         &Filter.2.Name=instance-state-name&Filter.2.Value.1=pending&Filter.2.Value.2=running\
         &InstanceId.1=i-1&InstanceId.2=i-2"
    );
}

#[test]
fn reads_describe_instances_with_pages_and_tags() {
    let doc = r#"<?xml version="1.0" encoding="utf-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><requestId>r</requestId>
<reservationSet><item><reservationId>r-1</reservationId><instancesSet><item>
<instanceId>i-a6ff3f9e4471e54d7</instanceId><imageId>ami-03cf127a</imageId>
<instanceState><code>16</code><name>running</name></instanceState>
<instanceType>m7g.large</instanceType><launchTime>2026-12-04T22:25:15.000Z</launchTime>
<placement><availabilityZone>us-east-1a</availabilityZone><tenancy>default</tenancy></placement>
<subnetId>subnet-06bc7f0718005996e</subnetId><privateIpAddress>172.31.0.4</privateIpAddress>
<tagSet><item><key>fleetfn:provider</key><value>p1</value></item><item><key>empty</key><value/></item></tagSet>
<metadataOptions><state>applied</state><httpTokens>required</httpTokens></metadataOptions>
</item></instancesSet></item>
<item><reservationId>r-2</reservationId><instancesSet><item>
<instanceId>i-2</instanceId><imageId>ami-1</imageId><instanceState><code>48</code><name>terminated</name></instanceState>
<instanceType>c7i.large</instanceType><placement><availabilityZone>us-east-1b</availabilityZone></placement>
<tagSet/></item></instancesSet></item></reservationSet><nextToken>page2</nextToken></DescribeInstancesResponse>"#;
    let d: xml::DescribeInstances = quick_xml::de::from_str(doc).unwrap();
    assert_eq!(d.next_token.as_deref(), Some("page2"));
    let all: Vec<Instance> = d
        .reservation_set
        .item
        .into_iter()
        .flat_map(|r| r.instances_set.item)
        .map(Instance::from)
        .collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, "i-a6ff3f9e4471e54d7");
    assert_eq!(all[0].state, InstanceState::Running);
    assert_eq!(all[0].zone, "us-east-1a");
    assert_eq!(all[0].private_ip.as_deref(), Some("172.31.0.4"));
    assert_eq!(all[0].tags["fleetfn:provider"], "p1");
    assert_eq!(all[0].tags["empty"], "");
    assert!(all[0].imds_v2_required);
    assert_eq!(all[1].state, InstanceState::Terminated);
    assert!(!all[1].state.is_live());
    assert!(!all[1].imds_v2_required);
    assert_eq!(all[1].subnet_id, None);
    let empty: xml::DescribeInstances = quick_xml::de::from_str(
        r#"<DescribeInstancesResponse><requestId>r</requestId><reservationSet/></DescribeInstancesResponse>"#,
    )
    .unwrap();
    assert!(empty.reservation_set.item.is_empty());
    assert_eq!(empty.next_token, None);
}

#[test]
fn reads_subnets_and_instance_types() {
    let subnets = r#"<DescribeSubnetsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><subnetSet><item>
<availabilityZoneId>use1-az6</availabilityZoneId><tagSet/><subnetId>subnet-06bc</subnetId><state>available</state>
<vpcId>vpc-9d09</vpcId><cidrBlock>172.31.0.0/20</cidrBlock><availabilityZone>us-east-1a</availabilityZone></item></subnetSet></DescribeSubnetsResponse>"#;
    let d: xml::DescribeSubnets = quick_xml::de::from_str(subnets).unwrap();
    let s: Vec<Subnet> = d.subnet_set.item.into_iter().map(Subnet::from).collect();
    assert_eq!(
        s,
        [Subnet {
            id: "subnet-06bc".into(),
            zone: "us-east-1a".into(),
            zone_id: Some("use1-az6".into()),
            vpc_id: "vpc-9d09".into(),
            state: "available".into(),
        }]
    );
    let types = r#"<DescribeInstanceTypesResponse><instanceTypeSet><item><instanceType>m7g.large</instanceType>
<currentGeneration>true</currentGeneration><bareMetal>false</bareMetal><processorInfo><supportedArchitectures>
<item>arm64</item></supportedArchitectures><sustainedClockSpeedInGhz>2.6</sustainedClockSpeedInGhz></processorInfo>
<vCpuInfo><defaultVCpus>2</defaultVCpus><defaultCores>2</defaultCores><validCores><item>1</item></validCores></vCpuInfo>
<memoryInfo><sizeInMiB>8192</sizeInMiB></memoryInfo></item></instanceTypeSet></DescribeInstanceTypesResponse>"#;
    let d: xml::DescribeInstanceTypes = quick_xml::de::from_str(types).unwrap();
    let t: Vec<InstanceTypeInfo> = d
        .instance_type_set
        .item
        .into_iter()
        .map(InstanceTypeInfo::from)
        .collect();
    assert_eq!(
        t,
        [InstanceTypeInfo {
            name: "m7g.large".into(),
            vcpus: 2,
            memory_mib: 8192,
            architectures: vec!["arm64".into()],
            current_generation: true,
            bare_metal: false,
            burstable: false,
            accelerated: false,
            hypervisor: String::new(),
        }]
    );
}

#[test]
fn ec2_errors_are_read_and_classified() {
    let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-nope' does not exist</Message></Error></Errors><RequestID>request-id</RequestID></Response>"#;
    let e = query_error(moto.as_bytes()).unwrap();
    assert_eq!(e.code, "InvalidInstanceID.NotFound");
    let refused = |code: &str, status: u16| Ec2Error::Refused {
        action: "RunInstances",
        status,
        code: code.into(),
        message: String::new(),
    };
    assert!(refused("InsufficientInstanceCapacity", 500).is_capacity());
    assert!(refused("VcpuLimitExceeded", 400).is_capacity());
    assert!(refused("Unsupported", 400).is_capacity());
    assert!(!refused("InvalidAMIID.NotFound", 400).is_capacity());
    assert!(refused("RequestLimitExceeded", 503).is_transient());
    assert!(!refused("UnauthorizedOperation", 403).is_transient());
    assert_eq!(
        refused("VcpuLimitExceeded", 400).code(),
        "VcpuLimitExceeded"
    );
}

/// Against `moto_server` (EC2 and STS): the operator role assumed, three subnets in three zones,
/// one instance launched in each with tags, IMDSv2 and user data, found by tag, terminated.
mod needs_moto {
    use super::*;
    use std::process::{Child, Command, Stdio};

    struct Moto {
        child: Child,
        url: String,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn moto() -> Moto {
        let exe = fleetfn_testutil::require(
            fleetfn_testutil::MOTO,
            fleetfn_testutil::program("moto_server"),
        );
        let port = free_port();
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let url = format!("http://127.0.0.1:{port}");
        let m = Moto { child, url };
        // Ready when it accepts connections; bounded (moto starts in ≈ 1–3 s).
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not listen on port {port} within 30 s");
    }

    fn source() -> Arc<SourceChain> {
        Arc::new(SourceChain::Static {
            credentials: SourceCredentials {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: "secret".into(),
                session_token: None,
                expires: None,
            },
            origin: "test".into(),
        })
    }

    #[tokio::test]
    #[ignore = "needs moto_server; run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=moto)"]
    async fn launches_finds_and_terminates_instances_with_an_assumed_role() {
        let m = moto().await;
        let sts = crate::StsClient::new(
            crate::StsConfig {
                endpoint: m.url.clone(),
                region: "us-east-1".into(),
                duration: Duration::from_secs(3600),
            },
            source(),
        )
        .unwrap();
        let creds = Ec2Credentials::assumed(
            Arc::new(sts),
            "arn:aws:iam::123456789012:role/fleetfn-operator",
            "fleetfn-p1",
        );
        let first = creds.current().await.unwrap();
        assert!(
            first.session_token.is_some(),
            "assumed-role credentials carry a token"
        );
        // Cached until five minutes before expiry.
        assert_eq!(creds.current().await.unwrap(), first);
        let ec2 = Ec2Client::new(
            Ec2Config {
                endpoint: m.url.clone(),
                region: "us-east-1".into(),
                ssm_endpoint: m.url.clone(),
            },
            creds,
        )
        .unwrap();

        // moto's default VPC has a subnet per zone.
        let doc: xml::DescribeSubnets = ec2.call("DescribeSubnets", Form::default()).await.unwrap();
        let ids: Vec<String> = doc
            .subnet_set
            .item
            .iter()
            .take(3)
            .map(|s| s.subnet_id.clone())
            .collect();
        assert_eq!(ids.len(), 3);
        let subnets = ec2.describe_subnets(&ids).await.unwrap();
        let zones: std::collections::BTreeSet<&str> =
            subnets.iter().map(|s| s.zone.as_str()).collect();
        assert_eq!(zones.len(), 3, "{subnets:?}");

        let missing = ec2
            .describe_subnets(&["subnet-00000000000000000".to_owned()])
            .await
            .unwrap_err();
        assert_eq!(missing.code(), "InvalidSubnetID.NotFound", "{missing}");

        let mut launched = Vec::new();
        for (i, s) in subnets.iter().enumerate() {
            let req = LaunchRequest {
                image_id: "ami-03cf127a".into(),
                instance_type: "m7g.large".into(),
                subnet_id: s.id.clone(),
                security_group_ids: vec![],
                user_data: format!("#!/bin/sh\nfleetfn agent --join token-{i}\n"),
                tags: BTreeMap::from([
                    ("fleetfn:provider".to_owned(), "p1".to_owned()),
                    ("fleetfn:zone".to_owned(), s.zone.clone()),
                ]),
                client_token: format!("p1-launch-{i}"),
                instance_profile: None,
            };
            let inst = ec2.run_instance(&req).await.unwrap();
            assert_eq!(inst.zone, s.zone);
            assert_eq!(inst.subnet_id.as_deref(), Some(s.id.as_str()));
            assert!(inst.imds_v2_required);
            assert!(inst.state.is_live());
            // (AWS launches at most one instance per ClientToken; moto 5.2.5 does not honour
            // it, so it is not asserted here: a provider's reconcile must not rely on it alone.)
            launched.push(inst.id);
        }
        // One more, not fleetfn's: never in the filtered answer.
        let other = LaunchRequest {
            image_id: "ami-03cf127a".into(),
            instance_type: "t3.micro".into(),
            subnet_id: subnets[0].id.clone(),
            security_group_ids: vec![],
            user_data: String::new(),
            tags: BTreeMap::new(),
            client_token: "other".into(),
            instance_profile: None,
        };
        ec2.run_instance(&other).await.unwrap();

        let ours = [Filter::new("tag:fleetfn:provider", &["p1"])];
        let mut found: Vec<String> = ec2
            .describe_instances(&ours)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        found.sort();
        let mut want = launched.clone();
        want.sort();
        assert_eq!(found, want);

        ec2.terminate_instances(&launched[..1]).await.unwrap();
        let after = ec2.describe_instances(&ours).await.unwrap();
        let gone = after.iter().find(|i| i.id == launched[0]).unwrap();
        assert!(!gone.state.is_live(), "{gone:?}");
        assert_eq!(after.iter().filter(|i| i.state.is_live()).count(), 2);

        let bad = ec2
            .terminate_instances(&["i-00000000000000000".to_owned()])
            .await
            .unwrap_err();
        assert_eq!(bad.code(), "InvalidInstanceID.NotFound", "{bad}");

        let types = ec2
            .describe_instance_types(&["m7g.large".to_owned(), "c7i.xlarge".to_owned()])
            .await
            .unwrap();
        let m7g = types.iter().find(|t| t.name == "m7g.large").unwrap();
        assert_eq!((m7g.vcpus, m7g.memory_mib), (2, 8192));
        assert_eq!(m7g.architectures, ["arm64"]);
        let c7i = types.iter().find(|t| t.name == "c7i.xlarge").unwrap();
        assert_eq!((c7i.vcpus, c7i.memory_mib), (4, 8192));
        assert_eq!(c7i.hypervisor, "nitro");
        assert!(!c7i.burstable && !c7i.accelerated);
        let more = ec2
            .describe_instance_types(&["t3.micro".to_owned(), "g5.xlarge".to_owned()])
            .await
            .unwrap();
        assert!(
            more.iter()
                .find(|t| t.name == "t3.micro")
                .unwrap()
                .burstable
        );
        assert!(
            more.iter()
                .find(|t| t.name == "g5.xlarge")
                .unwrap()
                .accelerated
        );
        // Every type, page by page.
        let all = ec2.describe_instance_types(&[]).await.unwrap();
        assert!(all.len() > 400, "{} types", all.len());

        // An image published as an SSM parameter (moto has AWS's public ones).
        let ami = ec2
            .get_parameter("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
            .await
            .unwrap();
        assert!(ami.starts_with("ami-"), "{ami}");
        let missing = ec2
            .get_parameter("/fleetfn/no-such-image")
            .await
            .unwrap_err();
        assert_eq!(missing.code(), "ParameterNotFound", "{missing}");
    }
}
