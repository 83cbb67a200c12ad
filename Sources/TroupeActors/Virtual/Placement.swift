import Synchronization
import TroupeCore

/// Rendezvous (highest-random-weight) placement of virtual actors over live members.
///
/// Each member scores every (type, key) — or (placement group, key) for types declaring a
/// ``VirtualActor/placementGroup`` — and the highest score owns it. Adding a member moves only the
/// keys it now wins (about 1/N of them); removing one moves only the keys it owned. The hash is
/// stable across processes and platforms (FNV-1a, then a 64-bit finaliser), so every node with the
/// same member list computes the same owner.
public enum Placement {
    /// The owner of `type`/`key` among `members` that host `type`, or `nil` when none does. With a
    /// placement `group` (``VirtualActor/placementGroup``) the key is scored by the group instead of the type,
    /// so every type of the group places the key on the same member.
    public static func owner(type: String, group: String? = nil, key: String, members: [ClusterMember]) -> ClusterMember? {
        // The prefix keeps a group apart from type names.
        let keyHash = hash(group.map { "group:" + $0 } ?? type, key)
        var best: ClusterMember?
        var bestScore: UInt64 = 0
        for member in members where member.hosts(type) {
            let score = mix(keyHash ^ memberHash(member.node))
            if let current = best, score < bestScore || (score == bestScore && member.node.name >= current.node.name) {
                continue
            }
            best = member
            bestScore = score
        }
        return best
    }

    static func memberHash(_ node: NodeID) -> UInt64 {
        // The incarnation is left out on purpose: a restarted node takes back the keys it had.
        fnv1a(node.name, seed: 0x9E37_79B9_7F4A_7C15)
    }

    static func hash(_ type: String, _ key: String) -> UInt64 {
        fnv1a(key, seed: fnv1a(type, seed: 0xCBF2_9CE4_8422_2325) ^ 0xFF)
    }

    static func fnv1a(_ string: String, seed: UInt64) -> UInt64 {
        var hash = seed
        for byte in string.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// The splitmix64 finaliser: spreads every input bit over the whole word.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
