/**
 * Returns the origin of the Envoy gateway that serves gRPC-web.
 *
 * VITE_GATEWAY_URL, read when Vite builds the bundle, wins over the page's own
 * origin, which fits a dashboard served behind the same Envoy listener.
 */
export function gatewayUrl(
  configured: string | undefined = import.meta.env.VITE_GATEWAY_URL,
  pageOrigin: string = window.location.origin,
): string {
  const url = configured?.trim() ?? "";
  return url === "" ? pageOrigin : url.replace(/\/+$/, "");
}
