import Foundation
import Synchronization
import TroupeRESP
public import TroupeRedis
import TroupeCore

/// The size of a Bloom filter for `expectedItems` at `falsePositiveRate`:
/// m = −n·ln p / (ln 2)², k = (m / n)·ln 2.
public struct BloomParameters: Sendable, Hashable {
    /// Bits in the filter (m, at least 64).
    public let bits: Int
    /// Hash functions per item (k, at least 1).
    public let hashes: Int

    /// The smallest filter for `expectedItems` at `falsePositiveRate`.
    /// - Throws: ``CacheError/Code/invalidConfiguration`` unless `expectedItems > 0` and `0 < falsePositiveRate < 1`.
    public init(expectedItems: Int, falsePositiveRate: Double) throws {
        guard expectedItems > 0, falsePositiveRate > 0, falsePositiveRate < 1 else {
            throw CacheError(.invalidConfiguration, "a Bloom filter needs expectedItems > 0 and 0 < falsePositiveRate < 1")
        }
        let m = ceil(-Double(expectedItems) * log(falsePositiveRate) / (log(2) * log(2)))
        bits = max(64, Int(m))
        hashes = max(1, Int((m / Double(expectedItems) * log(2)).rounded()))
    }

    /// The bit positions of `item` (Kirsch–Mitzenmacher double hashing over two FNV-1a variants).
    public func positions(_ item: String) -> [Int] {
        var h1: UInt64 = 0xCBF2_9CE4_8422_2325
        var h2: UInt64 = 0x8422_2325_CBF2_9CE4
        for byte in item.utf8 {
            h1 = (h1 ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            h2 = (h2 &+ UInt64(byte)) &* 0x9E37_79B9_7F4A_7C15
            h2 ^= h2 >> 29
        }
        return (0..<hashes).map { index in Int((h1 &+ UInt64(index) &* (h2 | 1)) % UInt64(bits)) }
    }
}

/// A Bloom filter: answers "definitely never added" or "maybe added" (penetration protection).
public protocol BloomFilter: Sendable {
    /// Records `item` (its bits set; never removed).
    func add(_ item: String) async throws
    /// `false` only for items never added.
    func mightContain(_ item: String) async throws -> Bool
}

/// A ``BloomFilter`` in process memory.
public final class InMemoryBloomFilter: BloomFilter {
    /// The filter's size.
    public let parameters: BloomParameters
    private let words: Guarded<[UInt64]>

    /// An empty filter of `parameters`' size.
    public init(parameters: BloomParameters) {
        self.parameters = parameters
        self.words = Guarded(Array(repeating: 0, count: (parameters.bits + 63) / 64))
    }

    public func add(_ item: String) async throws {
        let positions = parameters.positions(item)
        words.withLock { words in for bit in positions { words[bit / 64] |= 1 << UInt64(bit % 64) } }
    }

    public func mightContain(_ item: String) async throws -> Bool {
        let positions = parameters.positions(item)
        return words.withLock { words in positions.allSatisfy { words[$0 / 64] & (1 << UInt64($0 % 64)) != 0 } }
    }
}

/// A ``BloomFilter`` whose bit array is a Redis string, set and tested atomically by Lua.
public struct RedisBloomFilter: BloomFilter {
    /// The Redis it stores its bits in.
    public let redis: any RedisCommandSender
    /// The Redis key of the bit array.
    public let key: String
    /// The filter's size (every process using `key` must use the same).
    public let parameters: BloomParameters

    static let addScript = RedisScript("""
        for i = 1, #ARGV do redis.call('SETBIT', KEYS[1], ARGV[i], 1) end
        return 1
        """)
    static let testScript = RedisScript("""
        for i = 1, #ARGV do
          if redis.call('GETBIT', KEYS[1], ARGV[i]) == 0 then return 0 end
        end
        return 1
        """)

    /// A filter on `redis` under `key`, sized by `parameters`.
    public init(redis: any RedisCommandSender, key: String, parameters: BloomParameters) {
        self.redis = redis
        self.key = key
        self.parameters = parameters
    }

    public func add(_ item: String) async throws {
        _ = try await redis.evaluate(Self.addScript, keys: [key], arguments: parameters.positions(item))
    }

    public func mightContain(_ item: String) async throws -> Bool {
        try await redis.evaluate(Self.testScript, keys: [key], arguments: parameters.positions(item)).int == 1
    }
}
