import Synchronization
import TroupeCore

/// Message ids of one bus: sortable and unique, 24 hex digits — 48 bits of milliseconds (the bus's clock), then
/// 48 bits of a sequence that starts at a random point per bus (unique within it; across processes the random
/// start keeps ids apart, like RocketMQ's unique key of host, process and counter). The start is drawn once
/// (a draw per message cost a system call), from the bus's ``BusConfiguration/random``.
final class MessageIDs: Sendable {
    private let seed: UInt64
    private let sequence = Atomic<UInt64>(0)
    private let clock: any RuntimeClock

    init(seed: UInt64, clock: any RuntimeClock) {
        self.seed = seed & 0xFFFF_FFFF_FFFF
        self.clock = clock
    }

    func next() -> String {
        let ms = UInt64(clamping: clock.wallClockMilliseconds) & 0xFFFF_FFFF_FFFF
        let sequence = (seed &+ sequence.wrappingAdd(1, ordering: .relaxed).oldValue) & 0xFFFF_FFFF_FFFF
        return String(unsafeUninitializedCapacity: 24) { buffer in
            let digits: StaticString = "0123456789abcdef"
            digits.withUTF8Buffer { hex in
                for index in 0..<12 {
                    let shift = UInt64(44 - index * 4)
                    buffer[index] = hex[Int((ms >> shift) & 0xF)]
                    buffer[12 + index] = hex[Int((sequence >> shift) & 0xF)]
                }
            }
            return 24
        }
    }
}
