use super::*;
use governor::clock::FakeRelativeClock;

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .unwrap_or_else(|_| IpNet::from(s.parse::<IpAddr>().unwrap()))
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client(peer: &str, xff: &[&str], trusted: &[&str]) -> IpAddr {
    client_address(ip(peer), xff.iter().copied(), &nets(trusted))
}

#[test]
fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    assert_eq!(
        client("203.0.113.9", &["198.51.100.1"], &[]),
        ip("203.0.113.9")
    );
    assert_eq!(
        client("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"]),
        ip("203.0.113.9")
    );
}

#[test]
fn from_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
    let t = &["10.0.0.0/8", "192.0.2.7"];
    // The client wrote the left-most entry itself: it is not believed.
    assert_eq!(
        client("10.0.0.2", &["1.1.1.1, 198.51.100.1, 192.0.2.7"], t),
        ip("198.51.100.1")
    );
    // Several header lines are one list, in order.
    assert_eq!(
        client("10.0.0.2", &["1.1.1.1", "198.51.100.1", "10.9.9.9"], t),
        ip("198.51.100.1")
    );
    // No header: the proxy itself.
    assert_eq!(client("10.0.0.2", &[], t), ip("10.0.0.2"));
    // Every hop trusted: the furthest one.
    assert_eq!(
        client("10.0.0.2", &["10.1.1.1, 10.2.2.2"], t),
        ip("10.1.1.1")
    );
    // Ports and brackets, as some proxies write them.
    assert_eq!(
        client("10.0.0.2", &["198.51.100.1:4711"], t),
        ip("198.51.100.1")
    );
    assert_eq!(
        client("10.0.0.2", &["[2001:db8::1]:443"], t),
        ip("2001:db8::1")
    );
    // Junk our proxy would never write counts against the last trusted hop.
    assert_eq!(
        client("10.0.0.2", &["1.1.1.1, unknown, 10.3.3.3"], t),
        ip("10.3.3.3")
    );
    // A v4-mapped peer is the v4 address.
    assert_eq!(
        client("::ffff:10.0.0.2", &["198.51.100.1"], t),
        ip("198.51.100.1")
    );
}

#[test]
fn ipv6_clients_are_keyed_by_their_64() {
    assert_eq!(
        ClientKey::of(ip("2001:db8:1:2::1")),
        ClientKey::of(ip("2001:db8:1:2:ffff::9"))
    );
    assert_ne!(
        ClientKey::of(ip("2001:db8:1:2::1")),
        ClientKey::of(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        ClientKey::of(ip("::ffff:192.0.2.1")),
        ClientKey::of(ip("192.0.2.1"))
    );
}

fn limiter(
    burst: u32,
    per_second: f64,
    cap: usize,
) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    let l = Limiter::new(Rate { burst, per_second }, cap, clock.clone());
    (l, clock)
}

#[test]
fn a_burst_passes_then_the_wait_is_told_until_the_bucket_refills() {
    let (l, clock) = limiter(3, 0.5, 100);
    let k = ClientKey::of(ip("192.0.2.1"));
    for _ in 0..3 {
        assert_eq!(l.check(k), Ok(()));
    }
    let wait = l.check(k).unwrap_err();
    assert_eq!(wait, Duration::from_secs(2));
    // Another address has its own bucket.
    assert_eq!(l.check(ClientKey::of(ip("192.0.2.2"))), Ok(()));
    clock.advance(Duration::from_secs(2));
    assert_eq!(l.check(k), Ok(()));
    assert!(l.check(k).is_err());
}

#[test]
fn the_map_stays_bounded_under_a_flood_of_distinct_addresses() {
    let cap = 1_000;
    let (l, clock) = limiter(5, 1.0, cap);
    let mut refused = 0;
    for i in 0..100_000u32 {
        if l.check(ClientKey::V4(0x0a00_0000 + i)).is_err() {
            refused += 1;
        }
        // A millisecond apart: the whole flood is within two minutes.
        clock.advance(Duration::from_millis(1));
        assert!(l.tracked() <= cap);
    }
    // Past the cap, new addresses share one bucket until a sweep (once a second) drops the
    // refilled ones: at a thousand new addresses a second against a map of a thousand, most
    // of the flood is throttled as one client.
    assert!(refused > 50_000, "{refused}");
    // Known addresses keep their own buckets meanwhile.
    clock.advance(Duration::from_secs(10));
    l.sweep();
    assert_eq!(l.tracked(), 0, "refilled buckets are dropped");
    let honest = ClientKey::of(ip("198.51.100.7"));
    assert_eq!(l.check(honest), Ok(()));
    assert_eq!(l.tracked(), 1);
}

#[test]
fn a_full_map_is_swept_of_refilled_buckets_before_new_addresses_share_one() {
    let (l, clock) = limiter(2, 1.0, 16);
    for i in 0..16 {
        assert_eq!(l.check(ClientKey::V4(i)), Ok(()));
    }
    assert_eq!(l.tracked(), 16);
    clock.advance(Duration::from_secs(5));
    // Full, but every bucket has refilled: a new address gets its own after the sweep.
    assert_eq!(l.check(ClientKey::V4(100)), Ok(()));
    assert_eq!(l.tracked(), 1);
}
