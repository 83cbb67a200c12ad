import Foundation
import TroupeEtcdGenerated

/// A key and its value and revisions.
public struct EtcdKeyValue: Sendable, Hashable {
    /// The key.
    public var key: String
    /// The value's bytes.
    public var value: [UInt8]
    /// The revision that created the key (stays until it is deleted).
    public var createRevision: Int64
    /// The revision that last changed it.
    public var modRevision: Int64
    /// How many times it was written since it was created.
    public var version: Int64
    /// The id of the lease it is attached to (0: none).
    public var lease: Int64

    /// The value as UTF-8 text.
    public var stringValue: String { String(decoding: value, as: UTF8.self) }

    init(_ kv: Etcdserverpb_KeyValue) {
        key = String(decoding: kv.key, as: UTF8.self)
        value = Array(kv.value)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        version = kv.version
        lease = kv.lease
    }
}

/// The result of a range read.
public struct EtcdRangeResult: Sendable {
    /// The key-values read.
    public var kvs: [EtcdKeyValue]
    /// Whether more keys matched than the limit let through.
    public var more: Bool
    /// How many keys matched.
    public var count: Int64
    /// The store revision the read saw.
    public var revision: Int64
}

/// A granted lease.
public struct EtcdLease: Sendable, Hashable {
    /// The lease id.
    public var id: Int64
    /// The TTL the server granted.
    public var ttl: Duration
}

/// A comparison of a transaction's guard.
public struct EtcdCompare: Sendable {
    /// What a transaction's comparison looks at, with the operand: the key's version, create or modification revision, value, or lease.
    public enum Target: Sendable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    /// How a transaction's comparison compares.
    public enum Result: Sendable { case equal, notEqual, greater, less }

    /// The key compared.
    public var key: String
    /// What of the key is compared, and the operand.
    public var target: Target
    /// How it is compared.
    public var result: Result

    /// A comparison of `key`'s `target` with `result` (equal by default).
    public init(key: String, _ target: Target, _ result: Result = .equal) {
        self.key = key
        self.target = target
        self.result = result
    }

    /// The key does not exist (its create revision is 0).
    public static func absent(_ key: String) -> EtcdCompare { EtcdCompare(key: key, .createRevision(0)) }

    var message: Etcdserverpb_Compare {
        var compare = Etcdserverpb_Compare()
        compare.key = Data(key.utf8)
        switch result {
        case .equal: compare.result = .equal
        case .notEqual: compare.result = .notEqual
        case .greater: compare.result = .greater
        case .less: compare.result = .less
        }
        switch target {
        case .version(let version):
            compare.target = .version
            compare.version = version
        case .createRevision(let revision):
            compare.target = .create
            compare.createRevision = revision
        case .modRevision(let revision):
            compare.target = .mod
            compare.modRevision = revision
        case .value(let value):
            compare.target = .value
            compare.value = Data(value)
        case .lease(let lease):
            compare.target = .lease
            compare.lease = lease
        }
        return compare
    }
}

/// An operation inside a transaction.
public enum EtcdOperation: Sendable {
    case get(String, prefix: Bool = false)
    case put(String, [UInt8], lease: Int64 = 0)
    case delete(String, prefix: Bool = false)

    var message: Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        switch self {
        case .get(let key, let prefix):
            var range = Etcdserverpb_RangeRequest()
            range.key = Data(key.utf8)
            if prefix { range.rangeEnd = Data(EtcdClient.prefixEnd(key)) }
            op.requestRange = range
        case .put(let key, let value, let lease):
            var put = Etcdserverpb_PutRequest()
            put.key = Data(key.utf8)
            put.value = Data(value)
            put.lease = lease
            op.requestPut = put
        case .delete(let key, let prefix):
            var delete = Etcdserverpb_DeleteRangeRequest()
            delete.key = Data(key.utf8)
            if prefix { delete.rangeEnd = Data(EtcdClient.prefixEnd(key)) }
            op.requestDeleteRange = delete
        }
        return op
    }
}

/// The outcome of a transaction.
public struct EtcdTxnResult: Sendable {
    /// Whether the guard held (the success operations ran).
    public var succeeded: Bool
    /// The store revision after the transaction.
    public var revision: Int64
    /// The key-values read by `get` operations, in order.
    public var reads: [[EtcdKeyValue]]
}

/// A change seen by a watch.
public enum EtcdEvent: Sendable, Hashable {
    case put(EtcdKeyValue)
    case delete(key: String, revision: Int64)

    /// The key that changed.
    public var key: String {
        switch self {
        case .put(let kv): kv.key
        case .delete(let key, _): key
        }
    }

    /// The revision of the change.
    public var revision: Int64 {
        switch self {
        case .put(let kv): kv.modRevision
        case .delete(_, let revision): revision
        }
    }
}

/// What a watch delivers.
public enum EtcdWatchUpdate: Sendable {
    /// Changes, in revision order; all events up to `revision` have been delivered.
    case events([EtcdEvent], revision: Int64)
    /// The revision to resume from was compacted: events between it and `revision` are lost, so
    /// here is the whole current state of the watched range instead. Replace local state with it.
    case resynced([EtcdKeyValue], revision: Int64, compactedAt: Int64)
}
