# Operations, as an administrator sees them: mod_status's WebSocket section (?auto lines), the
# access-log record an asynchronous tunnel leaves when it ends, and a graceful restart that
# closes a live WebSocket with Close 1001 (Going Away) while the new generation serves.
use strict;
use warnings FATAL => 'all';
use FindBin;
use lib "$FindBin::Bin/lib";
use Apache::Test qw(-withtestmore);
use Apache::TestRequest qw(GET_BODY);
use AnyEvent;
use WstTest;

plan tests => 14, need_module qw(proxy proxy_wstunnel status);

sub pause { select undef, undef, undef, $_[0] }

# Our ?auto lines, as a hash.
sub status_auto {
    Apache::TestRequest::module('ops');
    my $body = GET_BODY('/server-status?auto');
    Apache::TestRequest::module('default');
    return { $body =~ /^(WebSocket\w+): (\d+)$/mg };
}

# Polls ?auto until $cond holds (relays count as they notice), at most 5 s.
sub wait_status {
    my ($cond) = @_;
    for (1 .. 50) {
        my $v = status_auto();
        return $v if $cond->($v);
        pause(0.1);
    }
    return status_auto();
}

# --- mod_status ---
my ($sync, $e1) = ws_open(url_for('ops', '/echo/sync'));
my ($async, $e2) = ws_open(url_for('ops_async', '/echo/async'));
ok($sync && $async, 'a synchronous and an asynchronous WebSocket open') or diag("$e1 $e2");
my $kb = 'k' x 10240;
is(ws_echo($sync, $kb), $kb, 'the synchronous one echoes 10 KB');
is(ws_echo($async, $kb), $kb, 'the asynchronous one echoes 10 KB');
my $v = wait_status(sub { ($_[0]{WebSocketAsyncTunnels} // 0) >= 1 && ($_[0]{WebSocketSyncTunnels} // 0) >= 1 });
cmp_ok($v->{WebSocketSyncTunnels} // 0, '>=', 1, 'WebSocketSyncTunnels counts the synchronous tunnel');
cmp_ok($v->{WebSocketAsyncTunnels} // 0, '>=', 1, 'WebSocketAsyncTunnels counts the asynchronous tunnel');
cmp_ok($v->{WebSocketBytesClientToBackend} // 0, '>=', 2 * 10240, 'bytes client to backend');
cmp_ok($v->{WebSocketBytesBackendToClient} // 0, '>=', 2 * 10240, 'bytes backend to client');
ok(defined $v->{WebSocketOldestTunnelSeconds}, 'the oldest tunnel\'s age is reported');

# --- the asynchronous tunnel's record, written when it ends ---
$async->close;
my $log = Apache::Test::vars('t_logs') . '/ws_access_log';
my $record = '';
for (1 .. 50) {
    if (open my $fh, '<', $log) {
        ($record) = grep { m{"GET /echo/async HTTP/1\.1"} } <$fh>;
        last if $record;
    }
    pause(0.1);
}
like($record // '', qr{"GET /echo/async HTTP/1\.1" 101 \d+ \d+ \d+ end=1$},
     'one record at the tunnel\'s end: 101, duration, bytes each way');
my ($in, $out) = ($record // '') =~ / (\d+) (\d+) end=1$/;
ok(($in // 0) >= 10240 && ($out // 0) >= 10240, 'its %I and %O count the tunnel\'s bytes') or diag($record);

# --- graceful restart: Close 1001, and the new generation serves ---
is(ws_echo($sync, 'before'), 'before', 'the synchronous WebSocket still echoes before the restart');
my $closed = AE::cv;
$sync->on(finish => sub { $closed->send($_[0]->close_code // 'none') });
open my $pf, '<', Apache::Test::vars('t_logs') . '/httpd.pid' or die "httpd.pid: $!";
chomp(my $pid = <$pf>);
kill 'USR1', $pid or die "kill USR1 $pid: $!";
is(ws_echo($sync, 'during the drain'), 'during the drain', 'it keeps working during the drain');
my $timer = AE::timer 10, 0, sub { $closed->send('no close within 10 s') };
is($closed->recv, 1001, 'then it is closed with 1001 (Going Away) on the graceful restart');
my ($after, $e3);
for (1 .. 50) {
    ($after, $e3) = ws_open(url_for('ops', '/echo/after'));
    last if $after;
    pause(0.1);
}
is($after ? ws_echo($after, 'after') : $e3, 'after', 'the new generation serves WebSockets');
