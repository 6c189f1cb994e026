# The builds behind flake.nix, with crane: dependencies compiled once (RocksDB's bundled C++
# included), then each package and check on top of them.
{ self, nixpkgs, crane, system }:
let
  pkgs = nixpkgs.legacyPackages.${system};
  lib = pkgs.lib;
  craneLib = crane.mkLib pkgs;

  # Rust sources plus what the tests read: ini fixtures, insta snapshots, recorded facts, the
  # onebox template, the pypegasus3 scripts.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      (craneLib.fileset.commonCargoSources ../.)
      (lib.fileset.fileFilter (f: f.hasExt "ini" || f.hasExt "toml" || f.hasExt "snap" || f.hasExt "json" || f.hasExt "vars" || f.hasExt "py" || f.hasExt "md") ../.)
      ../LICENSE
    ];
  };

  commonArgs = {
    inherit src;
    pname = "pegasus-rs";
    strictDeps = true;
    # librocksdb-sys runs bindgen and builds RocksDB's bundled C++ (static, hermetic).
    nativeBuildInputs = [ pkgs.rustPlatform.bindgenHook pkgs.pkg-config ];
    buildInputs = [ ];
  };

  # Every dependency, RocksDB included, built once and shared by all outputs.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  version = (craneLib.crateNameFromCargoToml { cargoToml = ../Cargo.toml; }).version;

  # Tests that start ZooKeeper, processes and pypegasus3 run in `.ci/run`; in the sandbox the
  # self-contained ones run.
  sandboxTests = "-p configcheck -p pegasus-protocol -p pegasus-transport -p pegasus-replication -p pegasus-client -p pegasus-tools --lib --test it --test frames --test simulation";

  pegasus-server = craneLib.buildPackage (commonArgs // {
    inherit cargoArtifacts;
    pname = "pegasus-server";
    cargoExtraArgs = "-p pegasus-server -p pegasus-tools --bins";
    doCheck = false;
  });

  configcheck = craneLib.buildPackage (commonArgs // {
    inherit cargoArtifacts;
    pname = "configcheck";
    cargoExtraArgs = "-p configcheck";
    cargoTestExtraArgs = "-p configcheck";
  });

  shortRev = self.shortRev or (builtins.substring 0 7 (self.dirtyRev or "0000000-dirty"));
  glibc = pkgs.stdenv.cc.libc.version or "unknown";
  tarballName = "pegasus-server-${version}-${builtins.substring 0 7 shortRev}-glibc${glibc}-release";

  # The same layout and name as `./run.sh pack_server`, reproducible.
  pegasus-server-tarball = pkgs.runCommand "${tarballName}.tar.gz" { nativeBuildInputs = [ pkgs.gnutar pkgs.gzip ]; } ''
    mkdir -p stage/${tarballName}/bin
    for b in pegasus_server pegasus_shell pegasus_bench pegasus_onebox pegasus_cluster; do
      install -m 0755 ${pegasus-server}/bin/$b stage/${tarballName}/bin/$b
    done
    install -m 0755 ${configcheck}/bin/configcheck stage/${tarballName}/bin/configcheck
    install -m 0644 ${../configcheck/tests/fixtures/reference/pegasus-config.ini} stage/${tarballName}/bin/config.ini
    install -m 0644 ${../tools/src/onebox/config.min.ini} stage/${tarballName}/bin/config.min.ini
    install -m 0644 ${../server/DEPLOY.md} stage/${tarballName}/bin/DEPLOY.md
    install -m 0644 ${../LICENSE} stage/${tarballName}/LICENSE
    echo "Pegasus Server ${version} (${shortRev}) glibc${glibc} release" > stage/${tarballName}/VERSION
    ${pegasus-server}/bin/pegasus_server --format > stage/${tarballName}/FORMAT
    tar --sort=name --mtime=@1 --owner=0 --group=0 --numeric-owner --format=gnu -C stage -cf - ${tarballName} | gzip -9 -n > $out
  '';

  # A container image without a Dockerfile or a daemon at build time.
  image = pkgs.dockerTools.streamLayeredImage {
    name = "pegasus";
    tag = version;
    contents = [ pegasus-server configcheck pkgs.cacert ];
    config = {
      Entrypoint = [ "${pegasus-server}/bin/pegasus_server" ];
      Cmd = [ "/etc/pegasus/config.ini" "-app_list" "replica" ];
      ExposedPorts = { "34601/tcp" = { }; "34801/tcp" = { }; "34101/tcp" = { }; };
    };
  };

  checks = {
    inherit pegasus-server configcheck pegasus-server-tarball;
    clippy = craneLib.cargoClippy (commonArgs // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--workspace --all-targets -- -D warnings";
    });
    fmt = craneLib.cargoFmt { inherit src; };
    tests = craneLib.cargoTest (commonArgs // {
      inherit cargoArtifacts;
      cargoTestExtraArgs = sandboxTests;
    });
  };
in
{
  inherit pkgs pegasus-server configcheck pegasus-server-tarball image checks;
  devShell = craneLib.devShell {
    inherit checks;
    packages = [ pkgs.zookeeper pkgs.jre_headless pkgs.ccache pkgs.hyperfine pkgs.redis pkgs.python3 pkgs.thrift pkgs.prometheus pkgs.chromium ];
  };
}
