import Foundation
import HTTPTypes

/// A JSON Schema, the part of it an API description needs, typed (rendered as OpenAPI 3.1 schema objects).
public indirect enum APISchema: Sendable, Hashable {
    case string
    case integer(minimum: Int? = nil, maximum: Int? = nil)
    case number
    case boolean
    case array(APISchema)
    /// Named properties; `required` lists those always present.
    case object([String: APISchema], required: [String] = [])
    /// An object whose keys are free and whose values follow the schema (`additionalProperties`).
    case map(APISchema)
    /// The schema or `null`.
    case nullable(APISchema)
    /// A schema of `components/schemas` by name.
    case reference(String)

    /// `{"type": "integer"}` and so on.
    var json: [String: Any] {
        switch self {
        case .string: return ["type": "string"]
        case .integer(let minimum, let maximum):
            var schema: [String: Any] = ["type": "integer"]
            if let minimum { schema["minimum"] = minimum }
            if let maximum { schema["maximum"] = maximum }
            return schema
        case .number: return ["type": "number"]
        case .boolean: return ["type": "boolean"]
        case .array(let items): return ["type": "array", "items": items.json]
        case .object(let properties, let required):
            var schema: [String: Any] = ["type": "object", "properties": properties.mapValues(\.json)]
            if !required.isEmpty { schema["required"] = required.sorted() }
            return schema
        case .map(let values): return ["type": "object", "additionalProperties": values.json]
        case .nullable(let schema): return ["anyOf": [schema.json, ["type": "null"]]]
        case .reference(let name): return ["$ref": "#/components/schemas/\(name)"]
        }
    }
}

/// One documented answer of a route: its status, what it means, and its body (none for 204).
public struct APIResponse: Sendable, Hashable {
    /// The HTTP status.
    public var status: Int
    public var description: String
    /// The body's schema (nil: no body).
    public var schema: APISchema?
    /// The body's media type.
    public var contentType: String

    /// An answer with `status`, described by `description`.
    public init(_ status: Int, _ description: String, schema: APISchema? = nil, contentType: String = "application/json") {
        self.status = status
        self.description = description
        self.schema = schema
        self.contentType = contentType
    }
}

/// The gateway's OpenAPI 3.1 description, built from its route table: path parameters from `:name`
/// segments, the request body and the answers each route declares, and the problem answers the gateway
/// itself gives around every route (401 without a session, 413/431 over the limits, 409/422 of the
/// Idempotency-Key, 429 of the rate limits, 503 + `Retry-After` when retrying may help).
struct OpenAPIDocument {
    struct Operation {
        var method: HTTPRequest.Method
        var path: String
        var summary: String
        var secured: Bool
        var idempotency: IdempotencyHandling?
        var request: APISchema?
        var responses: [APIResponse]
    }

    var operations: [Operation]

    static let problem: APISchema = .object([
        "type": .string, "title": .string, "status": .integer(), "detail": .string, "instance": .string,
        "retryable": .boolean,
    ], required: ["type", "title", "status", "retryable"])

    /// The document, keys sorted.
    func render() -> [UInt8] {
        var paths: [String: [String: Any]] = [:]
        for operation in operations {
            let segments = operation.path.split(separator: "/")
            let parameters = segments.filter { $0.hasPrefix(":") }.map { String($0.dropFirst()) }
            let path = "/" + segments.map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
            var entry: [String: Any] = [
                "summary": operation.summary,
                // Unique per method and path: "get_orders_id", "post_orders_id_cancel".
                "operationId": ([operation.method.rawValue.lowercased()] + segments.map { String($0.drop { $0 == ":" }) })
                    .joined(separator: "_").replacingOccurrences(of: ".", with: "_"),
                "responses": responses(of: operation, hasParameters: !parameters.isEmpty),
            ]
            var declared: [[String: Any]] = parameters.map { ["name": $0, "in": "path", "required": true, "schema": APISchema.string.json] }
            if operation.idempotency != nil {
                declared.append(["name": "Idempotency-Key", "in": "header", "required": false, "schema": ["type": "string", "maxLength": Gateway.maxIdempotencyKeyBytes],
                                 "description": "Retrying with the same key reaches the same effect; the key reused for another request is a 422."])
            }
            if !declared.isEmpty { entry["parameters"] = declared }
            if let request = operation.request {
                entry["requestBody"] = ["required": true, "content": ["application/json": ["schema": request.json]]]
            }
            if operation.secured { entry["security"] = [["bearer": [String]()]] }
            paths[path, default: [:]][operation.method.rawValue.lowercased()] = entry
        }
        let document: [String: Any] = [
            "openapi": "3.1.0",
            "info": ["title": "Troupe gateway", "version": "1.0.0"],
            "paths": paths,
            "components": [
                "securitySchemes": ["bearer": ["type": "http", "scheme": "bearer", "bearerFormat": "JWT"]],
                "schemas": ["Problem": Self.problem.json],
                "headers": ["Retry-After": ["description": "Seconds to wait before retrying", "schema": ["type": "integer"]]],
            ] as [String: Any],
        ]
        return [UInt8]((try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data())
    }

    private func responses(of operation: Operation, hasParameters: Bool) -> [String: Any] {
        var out: [String: Any] = [:]
        for response in operation.responses {
            var rendered: [String: Any] = ["description": response.description]
            if let schema = response.schema { rendered["content"] = [response.contentType: ["schema": schema.json]] }
            out[String(response.status)] = rendered
        }
        func problem(_ status: Int, _ description: String, retryAfter: Bool = false) {
            guard out[String(status)] == nil else { return }
            var rendered: [String: Any] = ["description": description,
                                           "content": ["application/problem+json": ["schema": APISchema.reference("Problem").json]]]
            if retryAfter { rendered["headers"] = ["Retry-After": ["$ref": "#/components/headers/Retry-After"]] }
            out[String(status)] = rendered
        }
        problem(400, "The request is malformed")
        if operation.secured { problem(401, "No valid session") }
        if hasParameters { problem(404, "No such resource") }
        if operation.idempotency == .replay {
            problem(409, "A request with this Idempotency-Key is still running", retryAfter: true)
            problem(422, "The Idempotency-Key was used for a different request")
        }
        if operation.request != nil { problem(413, "The body is over the limit") }
        problem(429, "Over a rate limit", retryAfter: true)
        problem(431, "The request headers are over the limit")
        problem(503, "Unavailable for now; retry after Retry-After", retryAfter: true)
        out["default"] = ["description": "Any other failure",
                          "content": ["application/problem+json": ["schema": APISchema.reference("Problem").json]]]
        return out
    }
}

/// The methods each path of the public API answers, from its operations and its upstream prefixes (which
/// forward GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS).
struct AllowedMethods: Sendable {
    private let templates: [(segments: [Substring], methods: [String])]
    private let prefixes: [String]
    static let forwarded = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"]

    init(operations: [OpenAPIDocument.Operation], prefixes: [String]) {
        var byPath: [String: Set<String>] = [:]
        for operation in operations { byPath[operation.path, default: []].insert(operation.method.rawValue) }
        templates = byPath.map { path, methods in (path.split(separator: "/"), methods.sorted()) }
        self.prefixes = prefixes
    }

    /// The methods `path` answers (empty: no route has this path).
    func methods(for path: String) -> [String] {
        if prefixes.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) { return Self.forwarded }
        let segments = path.split(separator: "/")
        var found = Set<String>()
        for template in templates where template.segments.count == segments.count {
            let matches = zip(template.segments, segments).allSatisfy { pattern, segment in
                pattern.hasPrefix(":") || pattern.hasPrefix("{") || pattern == segment
            }
            if matches { found.formUnion(template.methods) }
        }
        return found.sorted()
    }
}
