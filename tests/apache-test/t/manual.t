# The manual's examples, exactly as written (backends local), in both fallback modes:
# ProxyWebsocketFallbackToProxyHttp Off (our module tunnels) and On (mod_proxy_http does).
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/lib";
use Apache::Test qw(-withtestmore);
use Apache::TestRequest qw(GET);
use WstTest;

plan tests => 2 * 17 + 2,
    need_module qw(proxy proxy_http proxy_wstunnel proxy_balancer rewrite ssl);

for my $mode (qw(off on)) {
    # ProxyPass "/ws2/" "ws://echo.websocket.org/"
    my ($c, $err) = ws_open(url_for("${mode}_ws", "/ws2/whoami/$mode-example1"));
    ok($c, "$mode: ProxyPass ws:// opens") or diag($err);
    is(ws_next($c), 'backend one', "$mode: ProxyPass ws:// reaches the backend");
    is(ws_echo($c, "hello $mode"), "hello $mode", "$mode: ProxyPass ws:// echoes");
    $c->close;

    # ProxyPass "/wss2/" "wss://echo.websocket.org/"
    ($c, $err) = ws_open(url_for("${mode}_ws", "/wss2/whoami/$mode-wss"));
    ok($c, "$mode: ProxyPass wss:// opens") or diag($err);
    is(ws_next($c), 'backend tls', "$mode: ProxyPass wss:// reaches the TLS backend");
    my $big = join '', map { chr(65 + $_ % 26) } 0 .. (1 << 20) - 1;
    ok(ws_echo($c, $big) eq $big, "$mode: 1 MiB through a wss:// backend");
    $c->close;

    # ProxyPassMatch ^/(myApp/ws)$ ws://backend.example.com:9080/$1 before ProxyPass / http://
    ($c, $err) = ws_open(url_for("${mode}_match", "/myApp/ws"));
    ok($c, "$mode: ProxyPassMatch ws:// opens") or diag($err);
    is(ws_echo($c, "match $mode"), "match $mode", "$mode: ProxyPassMatch echoes");
    $c->close;
    Apache::TestRequest::module("${mode}_match");
    my $res = GET '/myApp/ws';
    is($res->content, "plain http from one\n", "$mode: plain HTTP on the same URL goes to the http ProxyPass");
    $res = GET '/some/page';
    is($res->code, 200, "$mode: other URLs go to the http ProxyPass");

    # The RewriteRule recipe for URLs that are not websocket-only.
    ($c, $err) = ws_open(url_for("${mode}_rewrite", "/whoami/$mode-rewrite"));
    ok($c, "$mode: RewriteRule [P] to ws:// opens") or diag($err);
    is(ws_next($c), 'backend one', "$mode: RewriteRule [P] reaches the backend");
    is(ws_echo($c, "rewrite $mode"), "rewrite $mode", "$mode: RewriteRule [P] echoes");
    $c->close;
    Apache::TestRequest::module("${mode}_rewrite");
    $res = GET '/plain';
    is($res->content, "plain http from one\n", "$mode: non-WebSocket requests keep the http ProxyPass");
    Apache::TestRequest::module('default');

    # Load balancing with mod_proxy_balancer (the third member is down).
    my (%seen, $opened);
    for my $i (1 .. 8) {
        my ($b) = ws_open(url_for("${mode}_ws", "/bal/whoami/$mode-bal-$i"));
        next unless $b;
        $opened++;
        my $who = ws_next($b);
        $seen{$who}++ if defined $who;
        $b->close;
    }
    is($opened, 8, "$mode: every balanced WebSocket opens despite the dead member");
    ok($seen{'backend one'} && $seen{'backend two'}, "$mode: both live members used")
        or diag(join ', ', map { "$_=$seen{$_}" } keys %seen);
    is(scalar(keys %seen), 2, "$mode: only live members answer");
}

# Which module tunnelled: ours logs WST01014 for every upgrade it asks a backend for.
my $log = error_log();
like($log, qr/WST01014: asked \S+ to upgrade to websocket for "GET \/ws2\/whoami\/off-example1 /i,
     'Off: our module tunnelled');
unlike($log, qr/WST01014: [^\n]*on-example1/, 'On: mod_proxy_http tunnelled, our module stepped aside');
