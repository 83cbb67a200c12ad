/// Redis Cluster key → hash slot mapping (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/).
public enum HashSlot {
    /// Slots in a Redis Cluster (16,384).
    public static let count = 16_384

    /// The slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag — the part between the first
    /// `{` and the next `}` when that part is not empty — modulo 16384.
    public static func of(_ key: some Collection<UInt8>) -> Int {
        let bytes = Array(key)
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
           let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
           close > open + 1 {
            return Int(crc16(bytes[(open + 1)..<close]) % UInt16(count))
        }
        return Int(crc16(bytes[...]) % UInt16(count))
    }

    /// The slot of `key` (of its UTF-8 bytes).
    public static func of(_ key: String) -> Int { of(key.utf8) }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 {
                crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
            }
        }
        return crc
    }
}
