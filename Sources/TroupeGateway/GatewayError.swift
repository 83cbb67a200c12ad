import Foundation
public import HTTPTypes
import Hummingbird

/// An error answered as RFC 9457 problem details (`application/problem+json`).
public struct GatewayError: Error, Sendable, CustomStringConvertible {
    /// The HTTP status answered.
    public var status: HTTPResponse.Status
    /// The problem's `title` (short, the same for every occurrence of the kind).
    public var title: String
    /// The problem's `detail` (this occurrence; never a secret).
    public var detail: String
    /// Extra response headers (`Retry-After`, `WWW-Authenticate`).
    public var headers: HTTPFields

    /// A problem answered with `status`, `title` and `detail`.
    public init(_ status: HTTPResponse.Status, _ title: String, detail: String = "", headers: HTTPFields = [:]) {
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers
    }

    /// A configuration that cannot work, found at start-up (500 if it ever reached a request).
    public static func configuration(_ detail: String) -> GatewayError {
        GatewayError(.internalServerError, "invalid gateway configuration", detail: detail)
    }

    public var description: String { "GatewayError \(status.code) \(title): \(detail)" }

    struct Body: Encodable {
        var type: String
        var title: String
        var status: Int
        var detail: String?
        var instance: String?
        /// Whether the same request may succeed later (it says when in `Retry-After`): an extension member.
        var retryable: Bool
    }

    /// A failure the client may retry: it carries `Retry-After` (429, 503, 409 while a duplicate runs).
    public var isRetryable: Bool { headers[.retryAfter] != nil }

    func response(instance: String?) -> Response {
        let (fields, body) = problem(instance: instance)
        return Response(status: status, headers: fields, body: .init(byteBuffer: body))
    }

    /// The problem document and its headers.
    func problem(instance: String?) -> (HTTPFields, ByteBuffer) {
        let body = Body(type: "about:blank", title: title, status: status.code, detail: detail.isEmpty ? nil : detail, instance: instance,
                        retryable: isRetryable)
        let data = (try? JSONEncoder().encode(body)) ?? Data()
        var fields = headers
        fields[.contentType] = "application/problem+json"
        return (fields, ByteBuffer(bytes: data))
    }
}
