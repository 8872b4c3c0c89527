/**
 * The nginx site the transport tests put in front of Rally (test/browser/transports-nginx.test.ts),
 * in its recommended form — the one docs/transports.md shows verbatim, which that test checks —
 * and in the broken forms the client's fallback must get through.
 */

export interface NginxSiteOptions {
  /** nginx's `listen` value. */
  listen: string
  /** host:port of the Rally server. */
  upstream: string
  /** Pass WebSocket upgrades (Upgrade and Connection forwarded). Default true. */
  websocket?: boolean
  /**
   * Buffer and compress responses, ignoring Rally's X-Accel-Buffering: no (a misconfigured
   * proxy: event streams are held back). Default false.
   */
  buffering?: boolean
}

/**
 * An nginx site in front of Rally. With the defaults it is the configuration docs/transports.md
 * recommends (this test checks the doc holds it verbatim); `websocket: false` and `buffering: true`
 * are the broken proxies the fallback must get through.
 */
export function nginxSite({
  listen,
  upstream,
  websocket = true,
  buffering = false,
}: NginxSiteOptions): string {
  const upgrade = websocket
    ? ['proxy_set_header Upgrade $http_upgrade;', 'proxy_set_header Connection $connection_upgrade;']
    : ['proxy_set_header Upgrade "";', 'proxy_set_header Connection "";']
  // nginx 1.22 buffering a proxied response still passes each partial buffer on as soon as the
  // client can take it (measured: events 200 ms apart arrive 200 ms apart), so buffering alone
  // holds nothing back. What holds a stream in practice is compression: gzip keeps output —
  // headers included — until its buffer fills, whatever Cache-Control: no-transform says.
  const buffer = buffering
    ? [
        'proxy_buffering on;',
        'proxy_ignore_headers X-Accel-Buffering;',
        'gzip on;',
        'gzip_types text/event-stream;',
      ]
    : ['proxy_buffering off;']
  const realtime = [
    'proxy_pass http://rally;',
    'proxy_http_version 1.1;',
    ...upgrade,
    'proxy_set_header Host $host;',
    'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    'proxy_read_timeout 75s;',
    'proxy_send_timeout 75s;',
    ...buffer,
  ]
  return `map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
}

upstream rally {
    server ${upstream};
}

server {
    listen ${listen};

    location /realtime {
${realtime.map((line) => `        ${line}`).join('\n')}
    }

    location / {
        proxy_pass http://rally;
    }
}
`
}
