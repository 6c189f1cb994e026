{
  description = "Pegasus server and deployment toolkit in Rust: pegasus_server, configcheck, pegasus_shell";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    crane.url = "github:ipetkov/crane";
  };

  outputs =
    { self, nixpkgs, crane, ... }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system (import ./nix { inherit self nixpkgs crane system; }));
    in
    {
      packages = forAllSystems (
        system: build: {
          inherit (build) pegasus-server configcheck pegasus-server-tarball image;
          default = build.pegasus-server;
        }
      );

      apps = forAllSystems (
        system: build: {
          configcheck = {
            type = "app";
            program = "${build.configcheck}/bin/configcheck";
          };
          pegasus-server = {
            type = "app";
            program = "${build.pegasus-server}/bin/pegasus_server";
          };
          default = self.apps.${system}.pegasus-server;
        }
      );

      checks = forAllSystems (system: build: build.checks);

      devShells = forAllSystems (
        system: build: {
          default = build.devShell;
        }
      );

      formatter = forAllSystems (system: build: build.pkgs.nixfmt-rfc-style);
    };
}
